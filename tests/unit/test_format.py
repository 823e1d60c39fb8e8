from kale_ray.data.format import answer_text, prompt_text


def test_views_differ_only_by_the_rationale():
    plain = prompt_text("Why is the sky blue?")
    with_r = prompt_text("Why is the sky blue?", "Air scatters blue light most.")
    assert plain.endswith("\nAnswer:") and with_r.endswith("\nAnswer:")
    assert with_r.replace("Rationale: Air scatters blue light most.\n", "") == plain
    assert answer_text(" Rayleigh scattering ") == " Rayleigh scattering"
