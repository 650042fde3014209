"""The evaluation lab: restore pairs with many methods, score them, reproduce the thesis' tables."""
