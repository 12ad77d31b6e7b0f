"""Schedules found, not handcrafted: the optimizer's room (search, the exact solver, lower bounds).

May import the ground floor (errors, ir, dag), lang/, schedules/, passes/, check/ and simulate.
Must not import cli/, viz/, interop/ or backends/, nor torch. Empty until the optimizer lands.
"""
