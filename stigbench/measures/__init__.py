"""Pure functions of images, scores and features: the FFT convention and spectra, detection metrics
(AUC, AP, EER...), PSNR/SSIM, the Fréchet distance and KID of feature sets. No I/O, no state.
"""
