"""Label files and codes: FACS/AU annotations (CSV parsers, FACS code helpers)."""
