"""Training the article's model two ways: `article` (numpy arrays into model.fit) and `resident` (the data
on the device once, a compiled train step per backend). Both time every epoch; `total_s` is the wall time
of all of them, first epoch and compilation included (the article's own measure)."""

from __future__ import annotations

import time
from typing import Any

from .backends import Backend
from .core import CLASSES, HIDDEN_UNITS, INPUT_DIM

QUIET = {"on": False}  # set in a worker started with quiet


def log(msg: str) -> None:
    if not QUIET["on"]:
        import sys

        print(f"mnist-benchmark: {msg}", file=sys.stderr, flush=True)


def numpy_eval(np: Any, weights: list[Any], x: Any, y: Any) -> tuple[float, float]:
    """Loss (exact log-softmax) and accuracy of the model's weights, in numpy."""
    w1, b1, w2, b2 = (np.asarray(w, dtype="float64") for w in weights)
    logits = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-(y * logp).sum(axis=1).mean())
    acc = float((logits.argmax(axis=1) == y.argmax(axis=1)).mean())
    return loss, acc


def _snapshot(keras: Any, variables: list[Any]) -> list[Any]:
    return [keras.ops.convert_to_numpy(v.value).copy() for v in variables]


def _restore(variables: list[Any], values: list[Any]) -> None:
    for var, value in zip(variables, values, strict=True):
        var.assign(value)


def build_model(keras: Any, seed: int) -> Any:
    keras.utils.set_random_seed(seed)  # every run starts from the same weights
    return keras.Sequential(
        [
            keras.Input(shape=(INPUT_DIM,)),
            keras.layers.Dense(HIDDEN_UNITS, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )


def fit_article(be: Backend, model: Any, x: Any, y: Any, batch: int, epochs: int, tag: str) -> dict[str, Any]:
    """The article's way: numpy arrays into model.fit; epochs timed by a callback."""
    keras = be.keras
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    times: list[float] = []
    losses: list[float] = []
    accs: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.t0)
            losses.append(float(logs["loss"]))
            accs.append(float(logs.get("accuracy", float("nan"))))
            log(
                f"[{tag}] epoch {epoch + 1}/{epochs} {times[-1]:.4f} s loss {losses[-1]:.4f} "
                f"acc {accs[-1]:.3f}"
            )

    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[EpochTimer()])
    total = time.perf_counter() - t0  # the article's measure: the whole fit, first epoch included
    return {
        "epoch_times_s": times,
        "epoch_losses": losses,
        "epoch_accuracies": accs,
        "total_s": total,
        "compile_s": None,
        "jit_compile": getattr(model, "jit_compile", None),
    }


def fit_resident(
    be: Backend, model: Any, x: Any, y: Any, batch: int, epochs: int, tag: str
) -> dict[str, Any]:
    """Data on the device once, a compiled train step, no per-batch host traffic."""
    keras = be.keras
    started = time.perf_counter()
    optimizer = keras.optimizers.RMSprop()
    loss_fn = keras.losses.CategoricalCrossentropy()
    optimizer.build(model.trainable_variables)
    xd, yd = be.to_device(x), be.to_device(y)
    n = x.shape[0]
    batches = [(xd[i : i + batch], yd[i : i + batch]) for i in range(0, n, batch)]
    shapes = {}  # one batch per distinct shape, to compile before timing
    for xb, yb in batches:
        shapes.setdefault(int(xb.shape[0]), (xb, yb))
    step, state_out, finish = RESIDENT_STEPS[be.name](be, model, optimizer, loss_fn)
    # Compile/warm up every batch shape, then put the weights back untouched.
    saved = _snapshot(keras, model.variables + optimizer.variables)
    t0 = time.perf_counter()
    for xb, yb in shapes.values():
        state_out(step(xb, yb))
    compile_s = time.perf_counter() - t0
    xla_flops = None
    if hasattr(step, "cost"):  # XLA's own count of the compiled step, a cross-check of the formula
        rows = max(shapes)
        try:
            flops = step.cost(*shapes[rows])
        except Exception as exc:  # a cross-check only: never the reason a run fails
            log(f"XLA cost analysis unavailable: {type(exc).__name__}: {exc}")
            flops = None
        xla_flops = flops / rows if flops else None
    _restore(model.variables + optimizer.variables, saved)
    step, state_out, finish = RESIDENT_STEPS[be.name](be, model, optimizer, loss_fn, reuse=step)
    times, losses, accs = [], [], []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        outs = [step(xb, yb) for xb, yb in batches]
        loss_sum, correct = finish(outs, [int(xb.shape[0]) for xb, _ in batches])  # syncs
        times.append(time.perf_counter() - t0)
        losses.append(loss_sum / n)
        accs.append(correct / n)
        log(f"[{tag}] epoch {epoch + 1}/{epochs} {times[-1]:.4f} s loss {losses[-1]:.4f} acc {accs[-1]:.3f}")
    state_out(None)  # write the trained weights back into the Keras variables
    return {
        "epoch_times_s": times,
        "epoch_losses": losses,
        "epoch_accuracies": accs,
        "compile_s": compile_s,
        "total_s": time.perf_counter() - started,
        "xla_flops_per_sample": xla_flops,
        "jit_compile": be.gpu_count > 0 if be.name == "tensorflow" else be.name == "jax",
        "data_device": be.data_device(xd),
    }


def _resident_tensorflow(
    be: Backend, model: Any, optimizer: Any, loss_fn: Any, reuse: Any = None
) -> tuple[Any, Any, Any]:
    tf = be.mod
    if reuse is None:
        # XLA where Keras' jit_compile="auto" uses it: with a GPU, not on CPU-only.
        @tf.function(jit_compile=be.gpu_count > 0, reduce_retracing=True)
        def step(xb: Any, yb: Any) -> Any:
            with tf.GradientTape() as tape:
                pred = model(xb, training=True)
                loss = loss_fn(yb, pred)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(pred, -1), tf.argmax(yb, -1)), tf.float32))
            return loss, hits
    else:
        step = reuse

    def finish(outs: list[Any], sizes: list[int]) -> tuple[float, float]:
        loss = tf.add_n([o[0] * s for o, s in zip(outs, sizes, strict=True)])
        hits = tf.add_n([o[1] for o in outs])
        return float(loss.numpy()), float(hits.numpy())

    def state_out(out: Any) -> None:
        if out is not None:
            out[0].numpy()

    return step, state_out, finish


def _resident_torch(
    be: Backend, model: Any, optimizer: Any, loss_fn: Any, reuse: Any = None
) -> tuple[Any, Any, Any]:
    torch = be.mod
    trainable = model.trainable_variables

    def step(xb: Any, yb: Any) -> Any:  # Keras' own torch train step, minus the data adapter
        pred = model(xb, training=True)
        model.zero_grad()
        loss = loss_fn(yb, pred)
        loss.backward()
        with torch.no_grad():
            optimizer.apply([v.value.grad for v in trainable], trainable)
            hits = (pred.argmax(-1) == yb.argmax(-1)).sum()
        return loss.detach(), hits

    def finish(outs: list[Any], sizes: list[int]) -> tuple[float, float]:
        sizes_t = torch.tensor(sizes, dtype=torch.float32, device=outs[0][0].device)
        loss = (torch.stack([o[0] for o in outs]) * sizes_t).sum()
        hits = torch.stack([o[1] for o in outs]).sum()
        return float(loss.item()), float(hits.item())

    def state_out(out: Any) -> None:
        if out is not None:
            out[0].item()

    return step, state_out, finish


def _resident_jax(
    be: Backend, model: Any, optimizer: Any, loss_fn: Any, reuse: Any = None
) -> tuple[Any, Any, Any]:
    jax = be.mod
    jnp = jax.numpy
    tv, ntv, ov = model.trainable_variables, model.non_trainable_variables, optimizer.variables
    if reuse is None:

        def loss_and_pred(t: Any, nt: Any, xb: Any, yb: Any) -> Any:
            pred, nt = model.stateless_call(t, nt, xb, training=True)
            return loss_fn(yb, pred), (pred, nt)

        grad_fn = jax.value_and_grad(loss_and_pred, has_aux=True)

        @jax.jit
        def jstep(state: Any, xb: Any, yb: Any) -> Any:
            t, nt, o = state
            (loss, (pred, nt)), grads = grad_fn(t, nt, xb, yb)
            t, o = optimizer.stateless_apply(o, grads, t)
            hits = jnp.sum(jnp.argmax(pred, -1) == jnp.argmax(yb, -1))
            return (t, nt, o), loss, hits
    else:
        jstep = reuse.jstep
    # Committed to the device like the step's outputs, so that the first call and
    # the later ones hit the same compiled executable (no recompilation in epoch 1).
    holder = {
        "state": jax.device_put(
            ([v.value for v in tv], [v.value for v in ntv], [v.value for v in ov]), be.jax_device
        )
    }

    def step(xb: Any, yb: Any) -> Any:
        holder["state"], loss, hits = jstep(holder["state"], xb, yb)
        return loss, hits

    step.jstep = jstep  # type: ignore[attr-defined]

    def cost(xb: Any, yb: Any) -> float | None:
        analysis = jstep.lower(holder["state"], xb, yb).compile().cost_analysis()
        if isinstance(analysis, (list, tuple)):  # older jax: one dict per device
            analysis = analysis[0] if analysis else {}
        return float(analysis["flops"]) if analysis and "flops" in analysis else None

    step.cost = cost  # type: ignore[attr-defined]

    def finish(outs: list[Any], sizes: list[int]) -> tuple[float, float]:
        loss = jnp.sum(jnp.stack([o[0] for o in outs]) * jnp.asarray(sizes, dtype=jnp.float32))
        hits = jnp.sum(jnp.stack([o[1] for o in outs]))
        return float(loss), float(hits)

    def state_out(out: Any) -> None:
        if out is not None:
            out[0].block_until_ready()
            return
        t, nt, o = holder["state"]
        for var, value in zip([*tv, *ntv, *ov], [*t, *nt, *o], strict=True):
            var.assign(value)

    return step, state_out, finish


RESIDENT_STEPS = {"tensorflow": _resident_tensorflow, "jax": _resident_jax, "torch": _resident_torch}
