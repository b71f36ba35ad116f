"""Request and response bodies (pydantic): the OpenAPI schema the service publishes is built from these.

Requests are strict (no type coercion, no unknown fields), so what the schema says is what is
accepted; the tensor contents (shape, dtype, range, finiteness) are checked by the codecs.
"""
from __future__ import annotations

from typing import Any, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

STRICT = ConfigDict(strict=True, extra="forbid")


class ErrorDetail(BaseModel):
    field: Optional[str] = Field(None, description="The request field at fault (dotted path), if any.")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class OipErrorResponse(BaseModel):
    """The Open Inference Protocol's error body (its clients read ``error`` as text)."""
    error: str
    field: Optional[str] = None


# -- Open Inference Protocol (KServe v2) ---------------------------------------------------------------------------
class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: List[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: List[str]


class ModelMetadata(BaseModel):
    name: str
    versions: List[str]
    platform: str
    inputs: List[TensorMetadata]
    outputs: List[TensorMetadata]


class Health(BaseModel):
    live: Optional[bool] = None
    ready: Optional[bool] = None


class InferInputTensor(BaseModel):
    model_config = STRICT
    name: str = Field(max_length=256)
    shape: List[int] = Field(max_length=8)
    datatype: str = Field(max_length=16)
    parameters: Optional[dict[str, Any]] = None
    data: Optional[List[Any]] = Field(None, description="Row-major flat or nested values: numbers for FP32, strings "
                                                       "for BYTES; absent when the tensor travels in binary "
                                                       "(parameters.binary_data_size, binary tensor extension).")


class InferRequestedOutput(BaseModel):
    model_config = STRICT
    name: str = Field(max_length=256)
    parameters: Optional[dict[str, Any]] = None


class InferRequest(BaseModel):
    model_config = STRICT
    id: Optional[str] = Field(None, max_length=256)
    parameters: Optional[dict[str, Any]] = None
    inputs: List[InferInputTensor] = Field(min_length=1, max_length=1)
    outputs: Optional[List[InferRequestedOutput]] = Field(None, max_length=8)


class InferOutputTensor(BaseModel):
    name: str
    shape: List[int]
    datatype: str
    parameters: Optional[dict[str, Any]] = None
    data: Optional[List[Any]] = None


class InferResponse(BaseModel):
    model_name: str
    model_version: Optional[str] = None
    id: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    outputs: List[InferOutputTensor]


# -- /v1: the friendly endpoint ------------------------------------------------------------------------------------
class CertifyRequest(BaseModel):
    model_config = STRICT
    sigma: float = Field(gt=0, le=10, description="Noise standard deviation of the smoothed classifier.")
    n: int = Field(ge=10, le=100_000, description="Noise samples for the estimate (n0 = min(100, n) more select "
                                                   "the class).")
    alpha: float = Field(0.001, gt=0, lt=0.5, description="Failure probability of the certificate.")


class PredictRequest(BaseModel):
    model_config = STRICT
    model: Optional[str] = Field(None, max_length=64, description="Model name; optional when one model is served.")
    inputs: List[Union[str, List[Any]]] = Field(
        min_length=1, description="Images as base64 PNG/JPEG strings or nested arrays (C, H, W) in the model's input "
                                  "range; texts as strings.")
    certify: Optional[CertifyRequest] = None


class Certified(BaseModel):
    label: int = Field(description="The smoothed classifier's class, or -1 when it abstains.")
    class_name: Optional[str]
    abstain: bool
    radius: float = Field(description="Certified L2 radius (0 when abstaining).")
    sigma: float
    n: int
    alpha: float


class Prediction(BaseModel):
    label: int
    class_name: str
    probabilities: List[float]
    suspicion: float = Field(description="Attack-suspicion score in [0, 1] (see the model card's serving.suspicion_signal).")
    certified: Optional[Certified] = None


class PredictResponse(BaseModel):
    model: str
    predictions: List[Prediction]


class ModelList(BaseModel):
    models: List[str]


ERROR_TEXT = {400: "Malformed request (e.g. invalid JSON)", 401: "Missing or wrong API key", 404: "Unknown model",
              413: "Body or image too large", 422: "Invalid request field (named in the error)",
              429: "Rate limit exceeded (see Retry-After)", 503: "Overloaded or shutting down"}


def errors(*codes: int, oip: bool = False) -> dict:
    """OpenAPI ``responses`` for the given error codes (the /v2 routes use the OIP error body)."""
    model = OipErrorResponse if oip else ErrorResponse
    return {c: {"model": model, "description": ERROR_TEXT[c]} for c in codes}
