"""Studies: the reproduce plan (Table 1, Table 2, Fig. 4) and its executor."""
