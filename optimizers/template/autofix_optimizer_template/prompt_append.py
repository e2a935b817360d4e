"""An optimizer in its simplest useful form: ask the optimizer model for one instruction that would
fix the failures, append it to each prompt file in turn, keep what scores better than the base."""

from __future__ import annotations

from autofix.optimize import BudgetExhausted, OptimizeTask, Proposal, optimizer


def _failures(task: OptimizeTask, limit: int = 4) -> str:
    failed = [c for c in task.base.cases if (c.score or 0.0) < 1.0][:limit]
    return "\n\n".join(f"Request: {c.input}\nAnswer: {c.output or c.error}\nWhat failed: {c.feedback}" for c in failed)


@optimizer("prompt_append", categories=["prompt"], version=1)
class PromptAppend:
    """Appends one model-written instruction to a prompt file; keeps it if the training score rises."""

    def propose(self, task: OptimizeTask) -> list[Proposal]:
        proposals: list[Proposal] = []
        try:
            for surface in task.files("prompt"):
                instruction = task.complete(
                    f"An assistant's prompt file {surface.path} reads:\n\n{surface.text}\n\nThese answers failed:\n\n"
                    f"{_failures(task)}\n\nWrite ONE sentence to add to the prompt file so such answers pass. "
                    "Reply with the sentence only.", max_tokens=120).strip()
                if not instruction:
                    continue
                files = {surface.path: surface.text.rstrip("\n") + "\n\n" + instruction + "\n"}
                batch = task.evaluate(files)  # replays the training cases with the new file
                task.log(f"{surface.path}: {task.base.score} -> {batch.score}")
                if batch.score is not None and (task.base.score is None or batch.score > task.base.score):
                    proposals.append(Proposal(files=files, description=f"prompt: add an instruction to {surface.path}",
                                              rationale=instruction, train_score=batch.score,
                                              base_score=task.base.score))
                if len(proposals) >= task.max_candidates:
                    break
        except BudgetExhausted as exc:  # stop and return what was found: never let the budget break
            task.log(f"budget spent: {exc}")
        return sorted(proposals, key=lambda p: p.train_score or 0.0, reverse=True)
