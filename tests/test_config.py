from rigl_repro.config import compose_config


def test_overrides_compose_as_on_the_command_line():
    cfg = compose_config(["dataset=fashion_mnist", "masking=rigl", "masking.density=0.05"])
    assert (cfg.dataset.name, cfg.model.name, cfg.masking.name, cfg.masking.density) == (
        "fashion_mnist", "lenet5", "rigl", 0.05
    )
    assert "hydra" not in cfg


def test_the_hydra_node_carries_a_sweep_s_parameters():
    cfg = compose_config(["experiment=demo"], with_hydra=True)
    assert cfg.hydra.sweeper.params.masking == "dense,static,set,rigl,snfs"
