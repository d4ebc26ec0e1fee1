"""Predictive distributions of a Laplace posterior: p(y | x, D) = E_{theta ~ N(theta*, Sigma)} p(y | f(theta, x)).

The linearized (GLM) model f(theta, x) ~ f(theta*, x) + J(x)(theta - theta*) makes the logits
Gaussian: z ~ N(f(theta*, x), J Sigma J^T). Then
- regression: y ~ N(f*, J Sigma J^T + sigma^2 I) in closed form;
- classification, probit (MacKay 1992): E softmax(z) ~ softmax(f* / sqrt(1 + pi/8 diag(J Sigma J^T)));
- Monte Carlo: average p(y | z_s) over theta_s ~ N(theta*, Sigma), through the linearization
  (samples="glm") or the network itself (samples="nn").
Jacobians are per example (vmapped), a chunk of examples at a time; a KFAC posterior of dense layers
needs none, nor does a diagonal one: each layer's J Sigma J^T follows from its input and its bias
Jacobian (_layer_moments).
"""

import functools
import math

import jax
import jax.numpy as jnp

from sandbox.bayes import kfac
from sandbox.errors import SandboxError

METHODS = ("probit", "glm", "mc")


def _chunks(x, chunk_size):
    n = x.shape[0]
    c = max(1, min(chunk_size, n))
    pad = (-n) % c
    xp = jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]) if pad else x
    return xp.reshape(-1, c, *x.shape[1:]), n


def _per_example(post):
    sub = post.subset
    theta = sub.theta(post.params)

    def f(th, xn):
        return post.model_fn(sub.merge(post.params, th), xn[None])[0]

    return f, theta


def glm_moments(post, x, chunk_size: int = 32):
    """(f_mu_NxC, f_var_NxCxC): the linearized model's mean and covariance J Sigma J^T."""
    chunks, n = _chunks(jnp.asarray(x), chunk_size)
    mu, var = _glm_moments(post, chunks, post.prior_vector())
    return mu.reshape(-1, mu.shape[-1])[:n], var.reshape(-1, *var.shape[-2:])[:n]


@jax.jit
def _glm_moments(post, chunks, delta_P):
    layers, others = kfac.split_layers(post.subset.paths, post.subset.shapes)
    if post.structure in ("kron", "diag") and layers and not others:
        return jax.lax.map(jax.vmap(lambda xn: _layer_moments(post, layers, delta_P, xn)), chunks)
    f, theta = _per_example(post)

    def jac(xn):
        z_C, vjp = jax.vjp(lambda th: f(th, xn), theta)
        return z_C, jax.vmap(lambda u: vjp(u)[0])(jnp.eye(z_C.shape[0], dtype=z_C.dtype))

    def one_chunk(xc):
        z_MxC, j_MxCxP = jax.vmap(jac)(xc)
        m, c, p = j_MxCxP.shape
        sj_PxMC = post.curv.cov_apply(delta_P, j_MxCxP.reshape(m * c, p).T)
        return z_MxC, jnp.einsum("mcp,pmk->mck", j_MxCxP, sj_PxMC.reshape(p, m, c))

    return jax.lax.map(one_chunk, chunks)


def _layer_moments(post, layers, delta_P, xn):
    """(z_C, J Sigma J^T) of one input for a KFAC or diagonal posterior of dense layers, from each layer's input
    a and bias Jacobian rows (kfac.layer_reads): O(D_in D_out + C D_out^2) per layer, no Jacobian."""
    sub = post.subset
    leaves = sub.leaves(post.params)
    f = lambda lv, xb: post.model_fn(sub.with_leaves(post.params, lv), xb)  # noqa: E731
    z_C = f(leaves, xn[None])[0]
    a, jac = kfac.layer_reads(f, leaves, xn, layers, jnp.eye(z_C.shape[0], dtype=z_C.dtype))
    offsets = kfac.offsets_of(sub.shapes)
    cov_CxC = jnp.zeros((z_C.shape[0],) * 2, z_C.dtype)
    for (w, b), a_I, jac_CxO in zip(layers, a, jac):
        cov_CxC += post.curv.layer_covariance(delta_P, offsets[w], a_I, jac_CxO)
        cov_CxC += post.curv.layer_covariance(delta_P, offsets[b], jnp.ones(1, z_C.dtype), jac_CxO)
    return z_C, cov_CxC


def probit(f_mu_NxC, f_var_diag_NxC):
    """softmax(f / sqrt(1 + pi/8 var)): the probit approximation of E softmax(z), z ~ N(f, diag var)."""
    return jax.nn.softmax(f_mu_NxC / jnp.sqrt(1.0 + math.pi / 8 * f_var_diag_NxC), axis=-1)


def predictive(post, x, method="probit", *, key=None, num_samples: int = 100, samples: str = "glm"):
    """Classification: probs_NxC. Regression: (mean_NxC, var_NxC) of y (noise included)."""
    if method not in METHODS:
        raise SandboxError(f"unknown predictive method {method!r}; valid: {', '.join(map(repr, METHODS))}")
    classify = post.likelihood == "classification"
    if method == "probit" and not classify:
        raise SandboxError("method='probit' is for classification; regression's GLM predictive is method='glm'")
    if method == "mc":
        return _monte_carlo(post, x, key, num_samples, samples)
    f_mu, f_var = glm_moments(post, x)
    diag_NxC = jnp.diagonal(f_var, axis1=-2, axis2=-1)
    if classify:
        return probit(f_mu, diag_NxC)
    return f_mu, diag_NxC + post.sigma_noise ** 2


def _monte_carlo(post, x, key, num_samples, samples):
    if key is None:
        raise SandboxError("method='mc' needs a PRNG key, e.g. key=jax.random.key(0)")
    if samples not in ("glm", "nn"):
        raise SandboxError(f"unknown samples={samples!r}; valid: 'glm', 'nn'")
    return _mc(post, jnp.asarray(x), post.curv.sample(post.prior_vector(), key, num_samples), samples)


@functools.partial(jax.jit, static_argnames="samples")
def _mc(post, x, theta_SxP, samples):
    f, theta = _per_example(post)
    if samples == "glm":
        def per_x(xn):
            z_C, jvp = jax.linearize(lambda th: f(th, xn), theta)
            return z_C + jax.vmap(jvp)(theta_SxP)
        z_SxNxC = jnp.swapaxes(jax.lax.map(per_x, x, batch_size=64), 0, 1)
    else:
        sub = post.subset
        z_SxNxC = jax.lax.map(lambda d: post.model_fn(sub.merge(post.params, theta + d), x), theta_SxP)
    if post.likelihood == "classification":
        return jnp.mean(jax.nn.softmax(z_SxNxC, axis=-1), axis=0)
    return jnp.mean(z_SxNxC, 0), jnp.var(z_SxNxC, 0) + post.sigma_noise ** 2
