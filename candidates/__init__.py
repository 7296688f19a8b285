"""Stage one: candidate sources behind one interface, their union and the recall report."""
