from django.urls import path

from apps.billing import api

urlpatterns = [
    path("users/me", api.MeView.as_view(), name="users-me"),
    path("users/balance", api.BalanceView.as_view(), name="users-balance"),
    path("users/transactions", api.TransactionListView.as_view(), name="users-transactions"),
    path("users/deposit", api.DepositView.as_view(), name="users-deposit"),
    path("users/spend-limits", api.SpendLimitsView.as_view(), name="users-spend-limits"),
]
