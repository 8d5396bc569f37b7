"""Anchors: copies of every signed checkpoint kept outside the appliance, where it can only append."""
