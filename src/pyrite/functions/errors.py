"""Lambda's errors as the service answers them: HTTP status, `x-amzn-ErrorType` and the JSON
body {"Type": "User"|"Service", "Message": ...} (botocore reads the code from the header)."""
from __future__ import annotations


class LambdaError(Exception):
    """One of Lambda's API errors; `code` is its x-amzn-ErrorType."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict:
        return {"Type": "User" if self.status < 500 else "Service", "Message": self.message, **self.extra}


def not_found(message: str) -> LambdaError:
    return LambdaError(404, "ResourceNotFoundException", message)


def function_not_found(arn: str) -> LambdaError:
    return not_found(f"Function not found: {arn}")


def conflict(message: str) -> LambdaError:
    return LambdaError(409, "ResourceConflictException", message)


def invalid_parameter(message: str) -> LambdaError:
    return LambdaError(400, "InvalidParameterValueException", message)


def validation(message: str) -> LambdaError:
    return LambdaError(400, "ValidationException", message)


def invalid_request_content(message: str) -> LambdaError:
    return LambdaError(400, "InvalidRequestContentException", message)


def too_many_requests(reason: str) -> LambdaError:
    return LambdaError(429, "TooManyRequestsException", "Rate Exceeded.", Reason=reason)


def too_large(limit: int) -> LambdaError:
    return LambdaError(413, "RequestEntityTooLargeException",
                       f"Request must be smaller than {limit} bytes for the InvokeFunction operation")


def unrecognized_client() -> LambdaError:
    return LambdaError(403, "UnrecognizedClientException", "The security token included in the request is invalid.")


def invalid_signature(message: str) -> LambdaError:
    return LambdaError(403, "InvalidSignatureException", message)


def missing_authentication() -> LambdaError:
    return LambdaError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")


def unknown_operation(method: str, path: str) -> LambdaError:
    return LambdaError(404, "UnknownOperationException", f"Unknown operation: {method} {path}")


def service_error(message: str) -> LambdaError:
    return LambdaError(500, "ServiceException", message)
