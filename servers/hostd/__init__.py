"""``chiffon hostd``: the per-host daemon that reports what its machine can take on and runs the hardware-bound
inference (speech, models).
"""
