"""Fit, evaluate, log and register the churn-risk, CLV and next-offer models."""
