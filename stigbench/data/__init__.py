"""Where images come from: dataset spec files, loading and checking images, the seeded split, and the
builders of the embedded demo datasets.
"""
