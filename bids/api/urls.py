from django.urls import path

from bids.api import views

urlpatterns = [
    path("postings", views.PostingListApi.as_view(), name="posting-list"),
    path("postings/<int:pk>", views.PostingDetailApi.as_view(), name="posting-detail"),
    path("bids", views.BidListCreateApi.as_view(), name="bid-list"),
    path("bids/<int:pk>", views.BidDetailApi.as_view(), name="bid-detail"),
    path("bids/<int:pk>/approve", views.BidApproveApi.as_view(), name="bid-approve"),
    path("bids/<int:pk>/withdraw", views.BidWithdrawApi.as_view(), name="bid-withdraw"),
]
