"""Performance model: per-iteration cost of a replica (roofline + calibrated efficiencies + fixed overheads) and its calibration."""
