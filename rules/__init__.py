"""The default rule set, shipped in the wheel as `airbuild_rules` (data files only)."""
