"""Every hidden check can fail: each accepts the reference and rejects at least one wrong
implementation (mutation-style: the difference is asserted before the equality). The checks
are called in-process, as the hidden cells call them, without nbgrader."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder import solutions
from autograder.build.notebook_source import load_master
from autograder.checks import (classification_head, delegation, inference, lora_injection,
                               lora_layer, lora_wrapper, training)
from autograder.demo.examples import PAPER_LORA_LAYER
from helpers.gpt import GPTModel
from helpers.inference import classify_texts
from helpers.tokenizer import gpt2_tokenizer


def rejects(check, *args, match: str | None = None) -> str:
    """The AssertionError message `check(*args)` raises (fails the test if it passes)."""
    with pytest.raises(AssertionError, match=match) as error:
        check(*args)
    return str(error.value)


# --- step 1: LoRALayer, in both layouts --------------------------------------------------

def _paper_lora_layer() -> type[nn.Module]:
    """The LoRA paper's and PEFT's layout (A (rank, in), B (out, rank), x @ A.T @ B.T): the
    code of the demo submission `paper_orientation`."""
    namespace = {"nn": nn, "torch": torch, "math": math}
    exec(PAPER_LORA_LAYER, namespace)
    return namespace["LoRALayer"]


PaperLoRALayer = _paper_lora_layer()


def _layer_variant(layout=solutions.LoRALayer, *, init_a=None, init_b=None, scaling=None,
                   forward=None, extra_parameter=False):
    class Variant(layout):
        def __init__(self, in_dim, out_dim, rank, alpha):
            super().__init__(in_dim, out_dim, rank, alpha)
            with torch.no_grad():
                if init_a is not None:
                    init_a(self.A)
                if init_b is not None:
                    init_b(self.B)
            if scaling is not None:
                self.scaling = scaling(rank, alpha)
            if extra_parameter:
                self.bias = nn.Parameter(torch.zeros(out_dim))

        def forward(self, x):
            return forward(self, x) if forward is not None else super().forward(x)
    return Variant


LAYOUTS = {"lab": solutions.LoRALayer, "paper": PaperLoRALayer}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lora_layer_checks_accept_both_layouts(layout):
    for check in (lora_layer.parameter_count, lora_layer.initialisation, lora_layer.scaling,
                  lora_layer.forward_matches_reference):
        check(LAYOUTS[layout])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_init_bound_check_rejects_the_wrong_bound_in_either_layout(layout):
    cls = LAYOUTS[layout]
    # the other layout's fan-in: 1/sqrt(64) on (in, rank) is too small, 1/sqrt(8) on (rank, in)
    # too large
    other_bound = 1 / math.sqrt(64 if layout == "lab" else 8)
    wrong = _layer_variant(cls, init_a=lambda A: A.uniform_(-other_bound, other_bound))
    expected = "too small" if layout == "lab" else "larger than kaiming"
    rejects(lora_layer.initialisation, wrong, match=expected)
    rejects(lora_layer.initialisation, _layer_variant(cls, init_b=lambda B: B.normal_()),
            match="B must start at zero")
    rejects(lora_layer.initialisation, _layer_variant(cls, init_a=lambda A: A.zero_()),
            match="A must start random")


def test_parameter_count_rejects_an_extra_parameter():
    rejects(lora_layer.parameter_count, _layer_variant(extra_parameter=True), match="trainable")


def test_scaling_check_names_alpha_instead_of_alpha_over_rank():
    message = rejects(lora_layer.scaling, _layer_variant(scaling=lambda rank, alpha: alpha))
    assert "= alpha, not alpha / rank" in message
    rejects(lora_layer.scaling, _layer_variant(scaling=lambda rank, alpha: rank / alpha),
            match="upside down")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_check_rejects_a_wrong_map(layout):
    cls = LAYOUTS[layout]
    without_scaling = _layer_variant(cls, forward=lambda self, x: cls.forward(self, x) / self.scaling)
    rejects(lora_layer.forward_matches_reference, without_scaling, match="not scaling")
    rank_times = _layer_variant(cls, forward=lambda self, x: cls.forward(self, x) * 4)
    assert "= alpha" in rejects(lora_layer.forward_matches_reference, rank_times)
    flat_only = _layer_variant(cls, forward=lambda self, x: cls.forward(self, x.reshape(-1, x.shape[-1])))
    rejects(lora_layer.forward_matches_reference, flat_only, match="gave output")


def _graded_cells_lost(notebook: str, namespace: dict) -> set[str]:
    """The graded code cells of a master that fail when run in order on `namespace`."""
    lost = set()
    for cell in load_master(notebook).cells:
        grading = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or grading.get("solution"):
            continue
        try:
            exec(compile(cell.source, notebook, "exec"), namespace)
        except Exception:  # noqa: BLE001 - a failing cell is what is measured
            if grading.get("grade"):
                lost.add(grading["grade_id"])
    return lost


def test_paper_layout_loses_exactly_the_visible_shape_test():
    assert _graded_cells_lost("01_lora_layer", {"LoRALayer": solutions.LoRALayer}) == set()
    lost = _graded_cells_lost("01_lora_layer", {"LoRALayer": PaperLoRALayer})
    assert lost == {"test_lora_layer_shapes"}


# --- step 2: LinearWithLoRA ----------------------------------------------------------------

def _wrapper_variant(*, copy_linear=False, forward=None, lora_dims=None):
    class Variant(nn.Module):
        def __init__(self, linear, rank, alpha):
            super().__init__()
            self.linear = (nn.Linear(linear.in_features, linear.out_features,
                                     bias=linear.bias is not None) if copy_linear else linear)
            if copy_linear:
                self.linear.load_state_dict(linear.state_dict())
            in_dim, out_dim = lora_dims or (linear.in_features, linear.out_features)
            self.lora = solutions.LoRALayer(in_dim, out_dim, rank, alpha)

        def forward(self, x):
            return forward(self, x) if forward else self.linear(x) + self.lora(x)
    return Variant


def test_wrapper_checks_accept_the_reference():
    for check in (lora_wrapper.keeps_the_given_layer, lora_wrapper.lora_branch_sizes,
                  lora_wrapper.bias_free_layers, lora_wrapper.adds_the_lora_update):
        check(solutions.LinearWithLoRA)


def test_wrapper_checks_reject_wrong_wrappers():
    rejects(lora_wrapper.keeps_the_given_layer, _wrapper_variant(copy_linear=True),
            match="same object")
    rejects(lora_wrapper.lora_branch_sizes, _wrapper_variant(lora_dims=(12, 20),
            forward=lambda self, x: self.linear(x)), match="in_features to its out_features")

    def with_bias_added(self, x):  # adds the bias a second time: wrong without bias too
        return self.linear(x) + self.lora(x) + (self.linear.bias if self.linear.bias is not None
                                                else 1.0)
    rejects(lora_wrapper.bias_free_layers, _wrapper_variant(forward=with_bias_added),
            match="without bias")
    rejects(lora_wrapper.adds_the_lora_update, _wrapper_variant(forward=lambda self, x: self.linear(x)),
            match="still equals linear")
    rejects(lora_wrapper.adds_the_lora_update,
            _wrapper_variant(forward=lambda self, x: self.linear(x) + 2 * self.lora(x)),
            match="linear\\(x\\) \\+ lora\\(x\\)")


# --- step 3: injection and freezing (GPT-2 on the meta device) ------------------------------

def _replace_variant(*, skip_out_head=True, only_attention=False):
    def replace(model, rank, alpha):
        for name, child in model.named_children():
            if name == "out_head" and skip_out_head:
                continue
            if isinstance(child, nn.Linear):
                if not only_attention or name in ("W_query", "W_key", "W_value", "out_proj"):
                    setattr(model, name, solutions.LinearWithLoRA(child, rank, alpha))
            else:
                replace(child, rank, alpha)
        return model
    return replace


def _freeze_b_forgotten(model):
    for param in model.parameters():
        param.requires_grad = False
    for module in model.modules():
        if isinstance(module, solutions.LoRALayer):
            module.A.requires_grad = True
    return model


def _no_recursion(model, rank, alpha):
    for name, child in model.named_children():
        if isinstance(child, nn.Linear) and name != "out_head":
            setattr(model, name, solutions.LinearWithLoRA(child, rank, alpha))
    return model


def _rank_ignored(model, rank, alpha):
    return solutions.replace_linear_with_lora(model, 8, alpha)


def _unfreeze_lora_only(model):
    """Makes LoRA trainable but never freezes the rest."""
    for module in model.modules():
        if isinstance(module, solutions.LoRALayer):
            module.A.requires_grad = module.B.requires_grad = True
    return model


def _inject(replace=solutions.replace_linear_with_lora):
    return lambda model: replace(model, 8, 16)


@pytest.fixture(scope="module")
def meta_gpt2():
    """GPT-2 small on the meta device after `steps` (default: the reference injection, freezing)."""
    def build(*steps):
        from helpers.gpt import gpt_config
        with torch.device("meta"):
            model = GPTModel(gpt_config("124M"))
            for step in steps or (_inject(), solutions.freeze_and_activate_lora):
                step(model)
        return model
    return build


def test_injection_checks_accept_the_reference(meta_gpt2):
    lora_injection.model_state(meta_gpt2())
    reference = (solutions.replace_linear_with_lora, solutions.freeze_and_activate_lora)
    lora_injection.gpt2_rank_8(*reference)
    lora_injection.other_ranks(*reference)
    lora_injection.returns_and_recurses(solutions.replace_linear_with_lora)
    lora_injection.resnet_linear_layers(*reference)


def test_model_state_names_the_known_mistakes(meta_gpt2):
    freeze = solutions.freeze_and_activate_lora
    out_head = rejects(lora_injection.model_state,
                       meta_gpt2(_inject(_replace_variant(skip_out_head=False)), freeze))
    assert out_head.startswith("1,735,304 = 1,327,104 + 408,200: the LoRA branch of `out_head`")
    twice = rejects(lora_injection.model_state, meta_gpt2(_inject(), freeze, _inject()))
    assert twice.startswith("2,654,208 = 2 x 1,327,104") and "injection ran twice" in twice
    attention = rejects(lora_injection.model_state,
                        meta_gpt2(_inject(_replace_variant(only_attention=True)), freeze))
    assert attention.startswith("589,824 trainable") and "only the attention layers" in attention
    b_frozen = rejects(lora_injection.model_state, meta_gpt2(_inject(), _freeze_b_forgotten))
    assert "663,552 trainable parameters, LoRA's A only: B is still frozen" in b_frozen
    unfrozen = rejects(lora_injection.model_state, meta_gpt2(_inject()))
    assert "pretrained weights must be frozen" in unfrozen
    for message in (out_head, twice, attention, b_frozen, unfrozen):  # no solution code
        assert "setattr" not in message and "requires_grad =" not in message


def test_injection_checks_reject_wrong_functions():
    freeze = solutions.freeze_and_activate_lora
    rejects(lora_injection.gpt2_rank_8, _replace_variant(skip_out_head=False), freeze,
            match="out_head")
    rejects(lora_injection.gpt2_rank_8, solutions.replace_linear_with_lora, _freeze_b_forgotten,
            match="B is still frozen")
    rejects(lora_injection.other_ranks, _rank_ignored, freeze, match="With rank 2")
    rejects(lora_injection.returns_and_recurses, _no_recursion, match="nested test model")
    rejects(lora_injection.returns_and_recurses, _replace_variant(skip_out_head=False),
            match="except modules named out_head")
    rejects(lora_injection.resnet_linear_layers, solutions.replace_linear_with_lora,
            _unfreeze_lora_only, match="On a ResNet: .* the pretrained weights must be frozen")


# --- step 4: the head and last_token_logits --------------------------------------------------

def _head_variant(*, std=None, freeze=False, classes=None, bias=True):
    def add(model, num_classes=2):
        head = nn.Linear(model.out_head.in_features, classes or num_classes, bias=bias)
        if std is not None:
            nn.init.normal_(head.weight, std=std)
            if head.bias is not None:
                nn.init.zeros_(head.bias)
        model.out_head = head
        if freeze:
            solutions.freeze_and_activate_lora(model)
        return model
    return add


def _padding_token(logits, last_idx):
    return logits[:, -1, :]


def _loop_over_batch_of_two(logits, last_idx):
    return torch.stack([logits[0, last_idx[0]], logits[1, last_idx[1]]])


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture
def tiny_classifier(tiny_cfg):
    torch.manual_seed(0)
    model = GPTModel(tiny_cfg)
    solutions.replace_linear_with_lora(model, 4, 8)
    solutions.freeze_and_activate_lora(model)
    return solutions.add_classification_head(model, 2).eval()


def test_head_checks_accept_the_reference(tiny_classifier, tokenizer):
    classification_head.gpt2_with_head(solutions.add_classification_head)
    classification_head.head_for_any_number_of_classes(solutions.add_classification_head)
    classification_head.head_starts_near_uniform(solutions.add_classification_head)
    classification_head.last_token_rows(solutions.last_token_logits)
    classification_head.padding_invariance(tiny_classifier, solutions.last_token_logits, tokenizer)
    batch = training._batch(seed=3, size=8)
    classification_head.initial_loss(tiny_classifier, solutions.last_token_logits, batch)


def test_head_checks_reject_wrong_heads():
    frozen = rejects(classification_head.gpt2_with_head, _head_variant(std=0.001, freeze=True))
    assert frozen.startswith("1,327,104 trainable = LoRA alone: the new head is frozen")
    rejects(classification_head.gpt2_with_head, _head_variant(std=0.001, bias=False),
            match="bias")
    rejects(classification_head.head_for_any_number_of_classes, _head_variant(classes=2),
            match="Asked for 200 classes")
    rejects(classification_head.head_starts_near_uniform, _head_variant(), match="initial loss")


def test_last_token_checks_name_the_padding_token(tiny_classifier, tokenizer):
    message = rejects(classification_head.last_token_rows, _padding_token)
    assert "padding token (id 50256)" in message
    assert "padding token" in rejects(classification_head.padding_invariance, tiny_classifier,
                                      _padding_token, tokenizer)
    rejects(classification_head.last_token_rows, _loop_over_batch_of_two, match="Output shape")


def test_initial_loss_rejects_a_confident_head(tiny_classifier):
    with torch.no_grad():
        tiny_classifier.out_head.weight.normal_(std=5.0)
    batch = training._batch(seed=3, size=8)
    rejects(classification_head.initial_loss, tiny_classifier, solutions.last_token_logits, batch,
            match="initial loss")


# --- step 5: optimizer, accuracy, train_step --------------------------------------------------

def _step_variant(*, head_frozen_in_step=False, no_step=False, loss_after=False,
                  update_frozen=False):
    def step(model, batch, optimizer):
        input_ids, labels, last_idx = batch
        optimizer.zero_grad()
        logits = solutions.last_token_logits(model(input_ids), last_idx)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        if head_frozen_in_step:
            model.out_head.weight.grad = None
            model.out_head.bias.grad = None
        if not no_step:
            optimizer.step()
        if update_frozen:
            with torch.no_grad():
                model.tok_emb.weight.add_(1e-3)
        if loss_after:
            with torch.no_grad():
                return F.cross_entropy(solutions.last_token_logits(model(input_ids), last_idx),
                                       labels).item()
        return loss.item()
    return step


def _sgd_optimizer(model, lr=5e-4, weight_decay=0.1):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)


def _all_parameters_optimizer(model, lr=5e-4, weight_decay=0.1):
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def _optimizer_ignoring_weight_decay(model, lr=5e-4, weight_decay=0.1):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)


def test_training_checks_accept_the_reference():
    training.accuracy_on_known_logits(solutions.calc_accuracy)
    training.optimizer_over_trainable_only(solutions.make_optimizer)
    training.step_moves_only_lora_and_head(solutions.train_step)
    training.step_loss_is_the_batch_loss(solutions.train_step)
    training.overfits_one_batch(solutions.train_step)
    training.works_on_a_resnet(solutions.make_optimizer, solutions.calc_accuracy)


def _optimizer_by_gpt2_names(model, lr=5e-4, weight_decay=0.1):
    """Right on the lab's GPT-2 (its trainable tensors are exactly these), empty on a ResNet."""
    return torch.optim.AdamW([p for n, p in model.named_parameters()
                              if "lora" in n or "out_head" in n], lr=lr, weight_decay=weight_decay)


def _two_class_accuracy(logits, labels):
    """Right for two classes only."""
    return ((logits[:, 1] > logits[:, 0]).long() == labels).float().mean().item()


def test_the_resnet_check_rejects_code_written_for_gpt2_only():
    training.optimizer_over_trainable_only(_optimizer_by_gpt2_names)  # passes on GPT-2...
    training.accuracy_on_known_logits(_two_class_accuracy)
    rejects(training.works_on_a_resnet, _optimizer_by_gpt2_names, solutions.calc_accuracy,
            match="requires_grad")                                 # ...not on a ResNet
    rejects(training.works_on_a_resnet, solutions.make_optimizer, _two_class_accuracy,
            match="argmax over all the classes")
    rejects(training.works_on_a_resnet, lambda model, lr=5e-4, weight_decay=0.1: torch.optim.SGD(
        model.parameters(), lr=lr * 1e-4), solutions.calc_accuracy, match="overfit")


def test_training_checks_reject_wrong_pieces():
    rejects(training.accuracy_on_known_logits,
            lambda logits, labels: (logits.argmin(-1) == labels).float().mean().item())
    rejects(training.accuracy_on_known_logits,
            lambda logits, labels: (logits.argmax(-1) == labels).sum().item(), match="right")
    rejects(training.optimizer_over_trainable_only, _sgd_optimizer, match="AdamW")
    rejects(training.optimizer_over_trainable_only, _all_parameters_optimizer, match="exactly")
    rejects(training.optimizer_over_trainable_only, _optimizer_ignoring_weight_decay,
            match="weight_decay")


def test_step_check_compares_the_head_before_and_after():
    message = rejects(training.step_moves_only_lora_and_head, _step_variant(head_frozen_in_step=True))
    assert "head's weights did not change" in message
    rejects(training.step_moves_only_lora_and_head, _step_variant(update_frozen=True),
            match="Frozen weights changed")
    rejects(training.step_loss_is_the_batch_loss, _step_variant(loss_after=True),
            match="before the step")
    rejects(training.overfits_one_batch, _step_variant(no_step=True), match="zero_grad")


# --- step 6: classify_text ---------------------------------------------------------------------

@pytest.fixture
def classifier(tiny_cfg):
    torch.manual_seed(1)
    model = solutions.add_classification_head(GPTModel(tiny_cfg))
    nn.init.normal_(model.out_head.weight, std=0.5)  # confident, varied answers
    return model.eval()


def _classify_variant(*, untruncated=False, probability_of_spam=False, no_empty_check=False,
                      padding_token=False):
    def classify(text, model, tokenizer, device, max_length=None):
        if not text.strip() and not no_empty_check:
            raise ValueError("empty")
        ids = tokenizer.encode(text)
        if not untruncated:
            ids = ids[:max_length]
        ids = ids[: model.pos_emb.weight.shape[0]]
        input_ids = torch.tensor([ids + [50256] * 3 if padding_token else ids], device=device)
        with torch.no_grad():
            logits = model(input_ids)[:, -1, :]
        probs = torch.softmax(logits, dim=-1)[0]
        label = int(probs.argmax())
        return ("ham", "spam")[label], probs[1 if probability_of_spam else label].item()
    return classify


def test_inference_checks_accept_the_reference(classifier, tokenizer):
    inference.same_as_batch(solutions.classify_text, classifier, tokenizer, 24)
    inference.probability_of_predicted_class(solutions.classify_text, classifier, tokenizer)
    inference.long_text_truncated(solutions.classify_text, classifier, tokenizer, 24)
    inference.empty_text_is_an_error(solutions.classify_text, classifier, tokenizer)


def test_inference_checks_reject_wrong_classifiers(classifier, tokenizer):
    rejects(inference.same_as_batch, _classify_variant(padding_token=True), classifier, tokenizer,
            24, match="you return")
    rejects(inference.probability_of_predicted_class, _classify_variant(probability_of_spam=True),
            classifier, tokenizer, match="predicted class has probability")
    rejects(inference.long_text_truncated, _classify_variant(untruncated=True),
            classifier, tokenizer, 24, match="first max_length tokens")
    rejects(inference.empty_text_is_an_error, _classify_variant(no_empty_check=True), classifier,
            tokenizer, match="ValueError")


# --- delegation to the pack's helpers ------------------------------------------------------------

def _delegating_classify_text(text, model, tokenizer, device, max_length=None):
    return classify_texts([text], model, tokenizer, device, max_length,
                          solutions.last_token_logits)[0]


def _delegating_train_step(model, batch, optimizer):
    from helpers.sanity import _default_step as step

    def forward(model, batch):
        return solutions.last_token_logits(model(batch[0]), batch[2]), batch[1]
    return step(forward)(model, batch, optimizer)


def test_delegating_exercises_get_no_points_and_say_why(classifier, tokenizer):
    # the delegating functions are right (same answers, a working step)...
    assert _delegating_classify_text("ok", classifier, tokenizer, "cpu", 24) == \
        solutions.classify_text("ok", classifier, tokenizer, "cpu", 24)
    # ...yet every check of their exercise refuses them, naming the helper
    for check in (inference.same_as_batch, inference.long_text_truncated):
        message = rejects(check, _delegating_classify_text, classifier, tokenizer, 24)
        assert "hands its work to the pack's helpers.inference.classify_texts" in message
    with pytest.raises(delegation.DelegationError, match="helpers.sanity._default_step"):
        training.overfits_one_batch(_delegating_train_step)
    with pytest.raises(delegation.DelegationError):
        delegation.own_train_step(_delegating_train_step)
    delegation.own_train_step(solutions.train_step)
    delegation.own_classify_text(solutions.classify_text)
