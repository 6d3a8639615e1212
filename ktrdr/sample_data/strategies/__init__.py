"""Sample strategy configs ({name}.yaml)."""
