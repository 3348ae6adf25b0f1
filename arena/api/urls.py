from django.urls import path

from arena.api import views

urlpatterns = [
    path("arena/competitions", views.CompetitionListCreateApi.as_view(), name="competition-list"),
    path("arena/competitions/<int:pk>", views.CompetitionDetailApi.as_view(), name="competition-detail"),
    path("arena/leaderboard", views.LeaderboardApi.as_view(), name="leaderboard"),
]
