"""Limited-memory BFGS in compact form, stepped by hand: one gradient evaluation per step.

torch.optim.LBFGS hides its evaluations inside `step(closure)` and stops on tolerances that froze
DLG runs short of a clean reconstruction. Here the caller evaluates, and this class only answers
"which direction next?". With the last m pairs s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i stacked as
rows of S and Y (m, n), the inverse Hessian estimate is (Byrd, Nocedal & Schnabel 1994, Eq. 3.1)

    H = gamma I + [S^T  gamma Y^T] M [S; gamma Y],
    M = [[R^-T (D + gamma Y Y^T) R^-1, -R^-T], [-R^-1, 0]]                        # Eq. (1)

with R the upper triangle of S Y^T (R_ij = s_i . y_j for i <= j), D its diagonal and
gamma = s.y / y.y of the newest pair. H g then costs two (m, n) products and two m x m solves:

    u = R^-1 (S g),  w = R^-T ((D + gamma Y Y^T) u - gamma Y g),  H g = gamma g + S^T w - gamma Y^T u   # Eq. (2)
"""

from __future__ import annotations

import torch

__all__ = ["CompactLBFGS"]


class CompactLBFGS:
    """Search directions from the newest `history` curvature pairs (no line search here).

    The pairs live in a ring buffer, and the small matrices S Y^T and Y Y^T are updated a row and
    a column at a time, so a step costs O(m n) rather than O(m^2 n)."""

    def __init__(self, history: int = 100) -> None:
        self.history = history
        self.order: list[int] = []  # buffer slots, oldest pair first
        self.S = self.Y = self.SY = self.YY = None  # (m, n), (m, n), (m, m), (m, m) once allocated

    def __len__(self) -> int:
        return len(self.order)

    def reset(self) -> None:
        """Forget the curvature pairs (after a change of variables, say)."""
        self.order = []

    def update(self, s: torch.Tensor, y: torch.Tensor) -> bool:
        """Remember one pair; skipped (False) when s . y is not safely positive."""
        s, y = s.detach(), y.detach()
        if float(s @ y) <= 1e-10 * float(y @ y):
            return False
        if self.S is None:
            m, n = self.history, len(s)
            self.S, self.Y = s.new_zeros(m, n), s.new_zeros(m, n)
            self.SY, self.YY = s.new_zeros(m, m), s.new_zeros(m, m)
        slot = self.order.pop(0) if len(self.order) == self.history else len(self.order)
        self.order.append(slot)
        self.S[slot], self.Y[slot] = s, y
        self.SY[slot, :] = self.Y @ s  # s_slot . y_j
        self.SY[:, slot] = self.S @ y  # s_i . y_slot
        self.YY[slot, :] = self.YY[:, slot] = self.Y @ y
        return True

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g (Eq. 2); plain steepest descent before the first pair."""
        if not self.order:
            return -g
        idx = torch.tensor(self.order, device=g.device)
        SY, YY = self.SY[idx][:, idx], self.YY[idx][:, idx]  # chronological
        gamma = SY[-1, -1] / YY[-1, -1]
        R = torch.triu(SY)
        D = torch.diag(torch.diagonal(SY))
        u = torch.linalg.solve_triangular(R, (self.S @ g)[idx, None], upper=True)  # Eq. (2)
        rhs = (D + gamma * YY) @ u - gamma * (self.Y @ g)[idx, None]
        w = torch.linalg.solve_triangular(R.T, rhs, upper=False)
        w_full, u_full = g.new_zeros(self.history), g.new_zeros(self.history)  # back to buffer slots
        w_full[idx], u_full[idx] = w.squeeze(1), u.squeeze(1)
        return -(gamma * g + self.S.T @ w_full - gamma * (self.Y.T @ u_full))
