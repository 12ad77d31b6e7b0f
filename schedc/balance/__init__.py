"""Balancers: deciding what runs where before scheduling (layers onto pipeline stages, MoE experts
onto GPUs).

May import the ground floor (errors, ir, dag), lang/, schedules/, passes/, check/, simulate, and
numpy/scipy. Must not import cli/ or backends/, nor torch at module level. Empty until the
partitioner and the expert balancer land.
"""
