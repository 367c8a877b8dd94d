// qstrs specific to the pyrite port (none beyond those found in the sources)
