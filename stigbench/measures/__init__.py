"""Pure functions of images and scores: the FFT convention and spectra, detection metrics (AUC, AP,
EER...), PSNR/SSIM. No I/O, no state.
"""
