"""Pictures of schedules: SVG/PNG timelines, Chrome traces, the DAG through graphviz, and the
text grid of an order (grid.py, which the compiler uses to show the window around an error).

May import the ground floor (errors, ir, dag), lang/ and simulate. Must not import the compiler,
cli/ or backends/. The core compiler never imports this package's optional libraries (cairosvg,
graphviz); each is imported where used, with an error that says what to install.

May import: errors, ir, dag, gcpause, lang, simulate
Libraries at module level: none
Libraries inside functions: cairosvg, graphviz
"""
