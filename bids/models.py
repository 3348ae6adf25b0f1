# Marketplaces, postings and bids arrive with their issue (planned, not built: docs/architecture.md).
