"""Int8 quantization with PyTorch's own eager-mode tooling (``torch.ao.quantization``, x86 backend).

Why eager mode: on this CPU build (torch 2.13 +cpu, x86/fbgemm kernels) eager static int8 is the
flow that runs every layer of robustkit's conv networks in int8 (fused conv+relu, linear+relu,
quantized max-pool), the quantized modules expose their int8 weights and scales for safetensors
serialization, and it needs no tracing of the model (FX/PT2E need a traceable graph; torchao's
int8 CPU kernels target linear layers only). Three flows:

- ``int8-static``: post-training static quantization of a conv network, calibrated on a data subset.
  The model's Normalize layer stays in float and a QuantStub follows it, so the quantized model
  takes the same [0, 1] inputs as the float one.
- ``int8-dynamic``: dynamic int8 for every ``nn.Linear`` (text transformers included; per-channel
  int8 weights, activations quantized on the fly), ``torch.ao.quantization.quantize_dynamic``.
- ``int8-qat``: quantization-aware (adversarial) fine-tuning: fake-quantized training, then convert.

A quantized model has no usable input gradients. :class:`QuantizedModel` says so
(``robustkit_differentiable = False``) and offers a differentiable float twin (the same
architecture with the int8 weights dequantized) that the audit crafts transfer attacks on.
Checkpoints store int8 weights as plain safetensors tensors (int_repr + scales + zero points).
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from .._validation import check_choice

MODES = ("int8", "int8-static", "int8-dynamic", "int8-qat")
BACKEND = "x86"
#: Layers eager static int8 runs (containers must be plain nn.Sequential; Normalize only as first layer).
_STATIC_OK = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
              nn.Identity, nn.Dropout)


@contextlib.contextmanager
def _quiet():
    """torch.ao.quantization warns that it is deprecated on every call; robustkit pins its use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _set_engine() -> None:
    if BACKEND in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = BACKEND


def resolve_mode(mode: str, modality: str) -> str:
    """``int8`` means static for image (conv) models and dynamic for text models."""
    check_choice(mode, "quantize", MODES, owner="harden")
    if mode == "int8":
        return "int8-dynamic" if modality == "text" else "int8-static"
    if mode in ("int8-static", "int8-qat") and modality == "text":
        raise ValueError(f"The 'quantize' parameter of harden must be 'int8' or 'int8-dynamic' for a text model "
                         f"(static int8 needs a conv network). Got {mode!r} instead.")
    return mode


def _split_normalize(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    from ..models import Normalize
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], Normalize):
        return model[0], model[1]
    return None, model


def check_static_quantizable(model: nn.Module) -> None:
    """Eager static int8 runs only known layers; anything else is named in the error."""
    norm, net = _split_normalize(model)
    prefix = "1." if norm is not None else ""
    found_weight = False
    for name, m in net.named_modules():
        if isinstance(m, nn.Sequential):
            continue
        if not isinstance(m, _STATIC_OK) or type(m) not in _STATIC_OK:
            where = (prefix + name).rstrip(".") or "the model itself"
            raise ValueError(f"Static int8 quantization cannot run layer {where!r} ({type(m).__name__}): eager int8 "
                             f"supports {', '.join(c.__name__ for c in _STATIC_OK)} inside nn.Sequential containers "
                             "(and a Normalize first layer). Use --quantize int8-dynamic (linear layers only) "
                             "for this model.")
        found_weight |= isinstance(m, (nn.Conv2d, nn.Linear))
    if not found_weight:
        raise ValueError("Static int8 quantization needs at least one Conv2d or Linear layer; the model has none.")


def _fuse(net: nn.Module) -> None:
    """Fuse conv+relu and linear+relu pairs of every Sequential (in place) for int8 kernels."""
    from torch.ao.quantization import fuse_modules
    groups = []
    for name, seq in net.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        kids = list(seq.named_children())
        for (a, ma), (b, mb) in zip(kids, kids[1:]):
            if isinstance(ma, (nn.Conv2d, nn.Linear)) and type(mb) is nn.ReLU:
                groups.append([f"{name}.{a}" if name else a, f"{name}.{b}" if name else b])
    if groups:
        fuse_modules(net, groups, inplace=True)


class StaticInt8(nn.Module):
    """Normalize (float) -> QuantStub -> the network in int8 -> DeQuantStub; takes the float model's inputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub
        self.model = model
        self.quant, self.dequant = QuantStub(), DeQuantStub()

    def forward(self, x):
        norm, net = _split_normalize(self.model)
        if norm is not None:
            x = norm(x)
        return self.dequant(net(self.quant(x)))


def _static_prepared(model: nn.Module, qat: bool) -> StaticInt8:
    from torch.ao.quantization import get_default_qat_qconfig, get_default_qconfig, prepare, prepare_qat
    check_static_quantizable(model)
    _set_engine()
    w = StaticInt8(model)
    norm, net = _split_normalize(model)
    w.train(qat) if qat else w.eval()
    _fuse(net)
    with _quiet():
        w.qconfig = get_default_qat_qconfig(BACKEND) if qat else get_default_qconfig(BACKEND)
        if norm is not None:
            norm.qconfig = None
        (prepare_qat if qat else prepare)(w, inplace=True)
    return w


def quantize_static(model: nn.Module, calibration: torch.Tensor, *, batch_size: int = 256) -> "QuantizedModel":
    """Post-training static int8 of a conv network; ``calibration`` images set the activation ranges."""
    w = _static_prepared(model, qat=False)
    with torch.no_grad(), _quiet():
        for i in range(0, calibration.shape[0], batch_size):
            w(calibration[i:i + batch_size])
    return _convert(w)


def prepare_qat(model: nn.Module) -> StaticInt8:
    """The fake-quantized (differentiable) training model of quantization-aware fine-tuning."""
    return _static_prepared(model, qat=True)


def _convert(w: StaticInt8) -> "QuantizedModel":
    from torch.ao.quantization import convert
    w.eval()
    with _quiet():
        convert(w, inplace=True)
    return QuantizedModel(w, flow="int8-static", float_prefix="body.model.")


def quantize_dynamic_int8(model: nn.Module) -> "QuantizedModel":
    """Dynamic int8 of every nn.Linear (weights int8; activations quantized on the fly, one input at a time:
    see QuantizedModel._per_input)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError("Dynamic int8 quantization acts on nn.Linear layers and the model has none; use "
                         "--quantize int8-static for a conv network.")
    _set_engine()
    model.eval()
    with _quiet():
        # per-channel int8 weights: one scale per output unit keeps transformer accuracy (per-tensor lost ~1 point)
        quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return QuantizedModel(model, flow="int8-dynamic", float_prefix="body.")


def quantization_skeleton(base: nn.Module, flow: str, example: torch.Tensor | None) -> "QuantizedModel":
    """The converted module structure of ``flow`` around a float model (weights and qparams to be loaded)."""
    if flow == "int8-dynamic":
        return quantize_dynamic_int8(base)
    w = _static_prepared(base, qat=False)
    with torch.no_grad(), _quiet():
        w(example)
    return _convert(w)


# -- the model robustkit loads, audits and serves ------------------------------------------------------
def _quantized_modules(root: nn.Module):
    for name, m in root.named_modules():
        if callable(getattr(m, "weight", None)) and hasattr(m, "set_weight_bias"):
            yield name, m


def _flatten_q(key: str, t: torch.Tensor, out: dict) -> None:
    out[f"{key}.int8"] = t.int_repr()
    if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                       torch.per_channel_affine_float_qparams):
        out[f"{key}.scales"] = t.q_per_channel_scales().float()
        out[f"{key}.zero_points"] = t.q_per_channel_zero_points().long()
        out[f"{key}.axis"] = torch.tensor([t.q_per_channel_axis()])
    else:
        out[f"{key}.scale"] = torch.tensor([t.q_scale()], dtype=torch.float64)
        out[f"{key}.zero_point"] = torch.tensor([t.q_zero_point()])


def _unflatten_q(key: str, tensors: dict, template: torch.Tensor) -> torch.Tensor:
    try:
        ints = tensors[f"{key}.int8"]
        if f"{key}.scales" in tensors:
            return torch._make_per_channel_quantized_tensor(ints, tensors[f"{key}.scales"].double(),
                                                            tensors[f"{key}.zero_points"].long(),
                                                            int(tensors[f"{key}.axis"][0]))
        return torch._make_per_tensor_quantized_tensor(ints, float(tensors[f"{key}.scale"][0]),
                                                       int(tensors[f"{key}.zero_point"][0]))
    except KeyError as err:
        raise KeyError(f"the int8 checkpoint lacks tensor {err.args[0]!r}") from None


class QuantizedModel(nn.Module):
    """An int8 model: forward runs the quantized kernels; attributes not found here are the wrapped
    model's (a text model's ``encode``/``tokenizer``...). ``state_dict`` holds plain tensors only
    (int8 weights as int_repr + scales + zero points), so a checkpoint is safetensors, never a pickle.
    """

    robustkit_differentiable = False

    def __init__(self, body: nn.Module, *, flow: str, float_prefix: str):
        super().__init__()
        self.body = body
        self.flow = flow
        self.float_prefix = float_prefix
        self.robustkit_spec = getattr(body, "robustkit_spec", None)
        self._twin_builder = None
        self._twin = None

    def forward(self, *args, **kwargs):
        if self.flow == "int8-dynamic" and len(args) == 1 and not kwargs:
            return self._per_input(args[0])
        return self.body(*args, **kwargs)

    def _per_input(self, inputs):
        """Dynamic int8 quantizes activations with one range per call, computed over the whole batch: a
        sentence's answer would depend on its neighbours (measured on MiniLM SST-2: dev accuracy -0.2 points at
        batch 1, -0.6 at 32, -1.3 at 256), and a served prediction on what else was micro-batched with it.
        So each input runs alone (a text without its padding): answers are batch-invariant, and still faster
        than the float model, which pays for the padding of the longest sentence in its batch."""
        if isinstance(inputs, dict) and "input_ids" in inputs and "attention_mask" in inputs:
            out = []
            for i in range(inputs["input_ids"].shape[0]):
                keep = inputs["attention_mask"][i].bool()
                out.append(self.body({k: v[i:i + 1, keep] if torch.is_tensor(v) and v.dim() == 2 else v
                                      for k, v in inputs.items()}))
            return torch.cat(out) if out else self.body(inputs)
        if torch.is_tensor(inputs) and inputs.dim() >= 2 and inputs.shape[0] > 1:
            return torch.cat([self.body(inputs[i:i + 1]) for i in range(inputs.shape[0])])
        return self.body(inputs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or name in ("body", "float_prefix", "flow"):
                raise
            return getattr(self._modules["body"], name)

    # -- safetensors-friendly state ------------------------------------------------------------------
    def state_dict(self, *args, **kwargs):  # noqa: D102 - see class docstring
        out: dict[str, torch.Tensor] = {}
        with _quiet():
            for key, v in nn.Module.state_dict(self).items():
                if isinstance(v, torch.Tensor) and v.is_quantized:
                    _flatten_q(key, v, out)
                elif isinstance(v, tuple):  # packed linear params: (int8 weight, float bias)
                    _flatten_q(f"{key}.weight", v[0], out)
                    if v[1] is not None:
                        out[f"{key}.bias"] = v[1].detach()
                elif isinstance(v, torch.Tensor):
                    out[key] = v.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        from collections import OrderedDict
        tensors = dict(state_dict)
        full: OrderedDict = OrderedDict()
        used = set()
        with _quiet():
            template = nn.Module.state_dict(self)
            full._metadata = getattr(template, "_metadata", None)  # the quantized modules' format versions
            for key, v in template.items():
                if isinstance(v, torch.Tensor) and v.is_quantized:
                    full[key] = _unflatten_q(key, tensors, v)
                    used |= {k for k in tensors if k.startswith(key + ".")}
                elif isinstance(v, tuple):
                    b = tensors.get(f"{key}.bias")
                    full[key] = (_unflatten_q(f"{key}.weight", tensors, v[0]), b)
                    used |= {k for k in tensors if k.startswith(key + ".")}
                elif isinstance(v, torch.Tensor):
                    if key not in tensors:
                        raise RuntimeError(f"Missing key(s) in state_dict: {key!r}")
                    full[key] = tensors[key]
                    used.add(key)
                else:  # e.g. the packed params' dtype entry
                    full[key] = v
            extra = sorted(set(tensors) - used)
            if strict and extra:
                raise RuntimeError(f"Unexpected key(s) in state_dict: {extra[:5]}")
            return nn.Module.load_state_dict(self, full, strict=strict)

    # -- the differentiable twin the audit crafts on ----------------------------------------------------
    def set_twin_builder(self, builder) -> None:
        """``builder()`` returns a float model of the same architecture (weights are filled in here)."""
        self._twin_builder = builder

    def dequantized_state(self) -> dict[str, torch.Tensor]:
        """The float model's weights: int8 weights dequantized (the weights' quantization error kept)."""
        p = self.float_prefix
        out = {}
        with _quiet():
            for key, v in nn.Module.state_dict(self).items():
                if isinstance(v, torch.Tensor) and not v.is_quantized and key.startswith(p):
                    out[key[len(p):]] = v.detach().float()
            for name, m in _quantized_modules(self):
                if not name.startswith(p):
                    continue
                out[name[len(p):] + ".weight"] = m.weight().dequantize()
                b = m.bias()
                if b is not None:
                    out[name[len(p):] + ".bias"] = b.detach().float()
        return out

    def dequantized_model(self) -> nn.Module:
        """The float architecture with the int8 weights dequantized (float activations), eval mode."""
        if self._twin_builder is None:
            raise ValueError("This quantized model has no float twin builder; load it with "
                             "robustkit.checkpoint.load_model or build it with robustkit.hardening.")
        twin = self._twin_builder()
        want = twin.state_dict()
        have = self.dequantized_state()
        missing = sorted(set(want) - set(have))
        if missing:
            raise ValueError(f"The float twin lacks weights for {missing[:3]}: the quantized model and its "
                             "float architecture differ.")
        twin.load_state_dict({k: have[k] for k in want}, strict=True)
        return twin.eval()

    def robustkit_float_twin(self) -> nn.Module:
        """The differentiable twin the audit crafts transfer attacks on.

        Static int8: a *fake-quantized* twin — the dequantized weights plus fake quantization of every
        activation with the int8 model's own scales and zero points (straight-through gradients), so it
        computes what the int8 kernels compute up to float rounding. Dynamic int8: the dequantized model
        (its activations are quantized per input at run time)."""
        if self._twin is None:
            twin = self.dequantized_model()
            if self.flow == "int8-static":
                twin = self._fake_quantized(twin)
            self.__dict__["_twin"] = twin
        return self._twin

    def _fake_quantized(self, float_twin: nn.Module) -> nn.Module:
        from torch.ao.quantization import disable_observer
        w = _static_prepared(float_twin, qat=True)
        w.apply(disable_observer)
        converted = dict(self.body.named_modules())
        for name, m in list(w.named_modules()):
            if hasattr(m, "weight_fake_quant"):  # the weights are already the int8 grid's values
                m.weight_fake_quant.disable_fake_quant()
            fq = getattr(m, "activation_post_process", None)
            if fq is None or not hasattr(fq, "scale"):
                continue
            q = converted.get(name)
            if q is None or not hasattr(q, "scale"):
                raise ValueError(f"The fake-quantized twin's layer {name!r} has no int8 counterpart (a bug).")
            m.activation_post_process = FixedFakeQuant(float(q.scale), int(q.zero_point))
        return w.eval()


class FixedFakeQuant(nn.Module):
    """Fake quantization to quint8 with fixed qparams (those of the int8 model), straight-through gradients."""

    def __init__(self, scale: float, zero_point: int):
        super().__init__()
        self.scale, self.zero_point = scale, zero_point

    def forward(self, x):
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}, zero_point={self.zero_point}"
