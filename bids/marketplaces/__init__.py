"""Marketplace adapters behind one interface (`bids.marketplaces.base.Adapter`)."""

from django.utils.module_loading import import_string

from bids.models import Marketplace

ADAPTERS = {
    Marketplace.Kind.FREELANCER: "bids.marketplaces.freelancer.FreelancerAdapter",
    Marketplace.Kind.UPWORK: "bids.marketplaces.upwork.UpworkAdapter",
    Marketplace.Kind.FEED: "bids.marketplaces.feed.FeedAdapter",
}


def adapter_for(marketplace: Marketplace):
    """The adapter that speaks this marketplace's API."""
    return import_string(ADAPTERS[marketplace.kind])(marketplace)
