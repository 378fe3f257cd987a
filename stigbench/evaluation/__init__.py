"""From what a run wrote to numbers: detection metric rows from scores, LFD/FID/KID/PSNR rows, and the
classification of each detector's move under an attack.
"""
