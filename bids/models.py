# Marketplaces, postings and bids (SPEC §6) arrive with their issue.
