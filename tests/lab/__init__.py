"""The three-host SSH lab (lab.py) and its pytest fixture; ``python -m tests.lab up`` starts one by hand."""
