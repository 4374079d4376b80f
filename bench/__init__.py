"""Tierline's benchmark suite: `./dev bench` (all) or `./dev bench bus` (one part)."""
