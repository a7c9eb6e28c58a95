"""Which process of a launched run this is (the launcher's environment), and the GPU each process takes."""

from workbench.core.distributed import is_main, process_device, rank, world_size


def test_one_process_alone_is_the_main_one_and_keeps_its_device(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert world_size() == 1 and rank() == 0 and is_main()
    assert process_device("cuda") == "cuda" and process_device("cpu") == "cpu"


def test_under_a_launcher_each_process_takes_its_own_gpu_and_only_rank_0_writes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")  # two machines of 4 GPUs
    monkeypatch.setenv("RANK", "5")  # the second machine's second process
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world_size() == 8 and rank() == 5 and not is_main()
    assert process_device("cuda") == "cuda:1"  # 8-bit weights on this process's GPU, not all on GPU 0
    assert process_device("cuda:0") == "cuda:0" and process_device("cpu") == "cpu"  # named devices stay
