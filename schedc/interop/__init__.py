"""Other tools' formats: PyTorch's schedule CSV (torch_csv.py, read and written) and the audit of
PyTorch's built-in schedules beside schedc's (torch_audit.py).

May import everything below cli/ (the compiler, lang/, simulate). Must not import cli/ or backends/.
torch itself is imported only inside functions, so the CSV round-trip works without it.

May import: errors, ir, dag, gcpause, lang, schedules, passes, check, simulate, compiler
Libraries at module level: none
Libraries inside functions: torch
"""
