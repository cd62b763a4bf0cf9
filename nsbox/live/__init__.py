"""Live labs: `nsbox up` keeps a lab up in a holder process; status, verify, exec, shell, down."""
