"""Views: ladder plots, diff figures, census plots, narrative text, notebook widgets."""
