"""Online serving above the simulator and the planners: drift re-planning and CascadeServe gear switching."""
