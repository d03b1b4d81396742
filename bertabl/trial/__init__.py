"""What a trial runs: typed, frozen configs built by the plan and read by the trial bodies.

The bottom floor of the package (torch-free, imports nothing above it): the plan builds these,
Ray carries them to the trial bodies, and a trial's id is the hash of its config's canonical
dump (see identity.py).
"""
