"""Tables, plots and the Markdown/HTML/LaTeX renderers of one run's report and of comparisons across runs.
"""
