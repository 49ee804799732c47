from apps.sourcing.adapters.lambda_labs.client import LambdaLabsAdapter

__all__ = ["LambdaLabsAdapter"]
