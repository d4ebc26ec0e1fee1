"""Posterior precision P = H + diag(delta) in four structures, each with what the posterior needs.

H is the curvature of the summed negative log-likelihood over the chosen parameters (P of them)
and delta_P the prior precision per parameter. Every structure answers, for a given delta:
  logdet(delta)         log det P                              (evidence)
  cov_apply(delta, V)   Sigma V with Sigma = P^{-1}, V (P x K)  (predictive variance J Sigma J^T)
  sample(delta, key, n) n draws of N(0, Sigma), (n x P)          (Monte-Carlo predictive)
  dense(delta)          P itself (P x P; small problems, tests)
- full:    H dense; Cholesky of P.
- diag:    H = diag(h); everything elementwise.
- kron:    H = blockdiag(A_l (x) B_l) (KFAC, see kfac.py); with A = Qa La Qa^T, B = Qb Lb Qb^T,
           P_l = (Qa (x) Qb)(La (x) Lb + delta_l)(Qa (x) Qb)^T: eigenvalues add the prior exactly.
- lowrank: H ~ V diag(lam) V^T (top-k eigenpairs by Lanczos), scalar delta on the complement:
           Sigma = V diag(1/(lam + delta)) V^T + (I - V V^T) / delta,
           log det P = sum log(lam + delta) + (P - k) log delta.
"""

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Full:
    h_PxP: jax.Array

    def dense(self, delta_P):
        return self.h_PxP + jnp.diag(delta_P)

    def logdet(self, delta_P):
        return 2 * jnp.sum(jnp.log(jnp.diag(jnp.linalg.cholesky(self.dense(delta_P)))))

    def cov_apply(self, delta_P, v_PxK):
        return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(self.dense(delta_P)), True), v_PxK)

    def sample(self, delta_P, key, n):
        chol_PxP = jnp.linalg.cholesky(self.dense(delta_P))  # P = L L^T, Sigma^{1/2} = L^{-T}
        eps_PxS = jax.random.normal(key, (delta_P.size, n), delta_P.dtype)
        return jax.scipy.linalg.solve_triangular(chol_PxP.T, eps_PxS, lower=False).T


@struct.dataclass
class Diag:
    h_P: jax.Array

    def dense(self, delta_P):
        return jnp.diag(self.h_P + delta_P)

    def logdet(self, delta_P):
        return jnp.sum(jnp.log(self.h_P + delta_P))

    def cov_apply(self, delta_P, v_PxK):
        return v_PxK / (self.h_P + delta_P)[:, None]

    def sample(self, delta_P, key, n):
        return jax.random.normal(key, (n, delta_P.size), delta_P.dtype) / jnp.sqrt(self.h_P + delta_P)

    def layer_covariance(self, delta_P, start, a_I, jac_CxO):
        """J Sigma J^T (C x C) of the dense block at `start` (row-major a.size x O) for rows J_c = a (x) jac_c:
        sum_io a_i^2 jac_co jac_do / (h_io + delta_io); the bias block has a = [1]."""
        size = a_I.size * jac_CxO.shape[1]
        inv_IxO = (1.0 / (self.h_P + delta_P))[start:start + size].reshape(a_I.size, -1)
        return (jac_CxO * (a_I ** 2 @ inv_IxO)) @ jac_CxO.T

    def head_variance(self, delta_P, phi_NxD):
        """diag(J Sigma J^T) per row for a linear head z = phi W (W row-major D x C)."""
        d = phi_NxD.shape[-1]
        return phi_NxD ** 2 @ (1.0 / (self.h_P + delta_P).reshape(d, -1))


@struct.dataclass
class KronBlock:
    """One dense-layer block A (x) B on the flat slice [start, start + a*b), row-major (a, b)."""
    qa_AxA: jax.Array
    la_A: jax.Array
    qb_BxB: jax.Array
    lb_B: jax.Array
    start: int = struct.field(pytree_node=False)

    @staticmethod
    def of(a_AxA, b_BxB, start):
        la_A, qa_AxA = jnp.linalg.eigh(a_AxA)
        lb_B, qb_BxB = jnp.linalg.eigh(b_BxB)
        # both factors are PSD: clip rounding's negative eigenvalues so La (x) Lb + delta stays > 0
        return KronBlock(qa_AxA, jnp.maximum(la_A, 0.0), qb_BxB, jnp.maximum(lb_B, 0.0), start)

    @property
    def size(self):
        return self.la_A.size * self.lb_B.size

    def eig_AxB(self, delta):
        return jnp.outer(self.la_A, self.lb_B) + delta


@struct.dataclass
class Kron:
    blocks: tuple

    def _delta(self, delta_P, blk):
        return delta_P[blk.start]  # one prior precision per block (checked when built)

    def dense(self, delta_P):
        mats = []
        for blk in self.blocks:
            q = jnp.kron(blk.qa_AxA, blk.qb_BxB)
            mats.append(q @ jnp.diag(blk.eig_AxB(self._delta(delta_P, blk)).ravel()) @ q.T)
        return jax.scipy.linalg.block_diag(*mats)

    def logdet(self, delta_P):
        return sum(jnp.sum(jnp.log(blk.eig_AxB(self._delta(delta_P, blk)))) for blk in self.blocks)

    def _scaled(self, delta_P, m_PxK, power):
        """(Qa (x) Qb) (La (x) Lb + delta)^power (Qa (x) Qb)^T m, block by block."""
        out = []
        for blk in self.blocks:
            na, nb = blk.la_A.size, blk.lb_B.size
            m_AxBxK = m_PxK[blk.start:blk.start + blk.size].reshape(na, nb, -1)
            rot = jnp.einsum("ia,jb,ijk->abk", blk.qa_AxA, blk.qb_BxB, m_AxBxK)
            rot = rot * blk.eig_AxB(self._delta(delta_P, blk))[..., None] ** power
            out.append(jnp.einsum("ia,jb,abk->ijk", blk.qa_AxA, blk.qb_BxB, rot).reshape(blk.size, -1))
        return jnp.concatenate(out, axis=0)

    def cov_apply(self, delta_P, v_PxK):
        return self._scaled(delta_P, v_PxK, -1.0)

    def sample(self, delta_P, key, n):
        eps_PxS = jax.random.normal(key, (delta_P.size, n), delta_P.dtype)
        return self._scaled(delta_P, eps_PxS, -0.5).T  # Q D^{-1/2} Q^T eps has covariance Sigma

    def layer_covariance(self, delta_P, start, a_I, jac_CxO):
        """J Sigma J^T (C x C) of the block at `start` for a dense layer's Jacobian rows J_c = a (x) jac_c:
        sum_ij ((Qa^T a)_i)^2 (Qb^T jac_c)_j (Qb^T jac_d)_j / (la_i lb_j + delta); the bias block has a = [1]."""
        (blk,) = [b for b in self.blocks if b.start == start]
        m_O = (a_I @ blk.qa_AxA) ** 2 @ (1.0 / blk.eig_AxB(self._delta(delta_P, blk)))
        v_CxO = jac_CxO @ blk.qb_BxB
        return (v_CxO * m_O) @ v_CxO.T

    def head_variance(self, delta_P, phi_NxD):
        """diag(J Sigma J^T) per row for a linear head z = phi W (one block, J = phi^T (x) I)."""
        (blk,) = self.blocks
        u_NxA = (phi_NxD @ blk.qa_AxA) ** 2
        m_NxB = u_NxA @ (1.0 / blk.eig_AxB(self._delta(delta_P, blk)))
        return m_NxB @ (blk.qb_BxB ** 2).T


@struct.dataclass
class LowRank:
    values_K: jax.Array
    vectors_KxP: jax.Array

    def dense(self, delta_P):
        v = self.vectors_KxP
        return v.T @ jnp.diag(self.values_K) @ v + jnp.diag(delta_P)

    def logdet(self, delta_P):
        delta = delta_P[0]  # scalar prior (checked when built)
        return jnp.sum(jnp.log(self.values_K + delta)) + (delta_P.size - self.values_K.size) * jnp.log(delta)

    def _scaled(self, delta_P, m_PxK, power):
        delta, v = delta_P[0], self.vectors_KxP
        coef_KxK = v @ m_PxK
        inside = v.T @ (((self.values_K + delta) ** power)[:, None] * coef_KxK)
        return inside + delta ** power * (m_PxK - v.T @ coef_KxK)

    def cov_apply(self, delta_P, v_PxK):
        return self._scaled(delta_P, v_PxK, -1.0)

    def sample(self, delta_P, key, n):
        eps_PxS = jax.random.normal(key, (delta_P.size, n), delta_P.dtype)
        return self._scaled(delta_P, eps_PxS, -0.5).T
