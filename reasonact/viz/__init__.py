"""Views for notebooks and reports: figures, widgets, the reward inspector."""
