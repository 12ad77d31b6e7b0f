"""Executors of compiled plans (installed as `schedc.backends`); torch/ is the one there is.

May import: nothing
Libraries at module level: none
"""
