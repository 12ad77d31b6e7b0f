"""Pictures of schedules: SVG/PNG timelines, Chrome traces, the DAG through graphviz.

The core compiler never imports this package's optional libraries (cairosvg, graphviz); each is
imported where used, with an error that says what to install.
"""
