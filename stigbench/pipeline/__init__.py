"""One benchmark run and grids of runs: the validated plan, the run context, the stage cache, the
runner that executes the stages, and applying a saved refiner to a folder.
"""
