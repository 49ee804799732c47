from apps.catalog.models import ModelTemplate
from apps.catalog.services.templates import templates_seed


def test_seed_creates_the_catalog_and_is_idempotent(db):
    first = templates_seed()
    second = templates_seed()

    assert first.created >= 15 and first.updated == 0
    assert (second.created, second.updated) == (0, 0)
    assert second.unchanged == first.created
    gpu_templates = ModelTemplate.objects.exclude(slug__startswith="local-")
    assert gpu_templates.count() >= 15
    assert {t.category for t in gpu_templates} == {
        "llm",
        "image",
        "audio-stt",
        "audio-tts",
        "embedding",
        "code",
        "multimodal",
    }


def test_seed_restores_an_edited_template(db):
    templates_seed()
    ModelTemplate.objects.filter(slug="llama-3.1-8b-instruct").update(image="tampered:1")

    result = templates_seed()

    assert result.updated == 1
    assert ModelTemplate.objects.get(slug="llama-3.1-8b-instruct").image.startswith("vllm/")


def test_every_gpu_template_says_how_to_run_it(db):
    templates_seed()
    for template in ModelTemplate.objects.exclude(slug__startswith="local-"):
        assert "/" in template.image and ":" in template.image, template.slug
        assert template.port and template.health_path.startswith("/"), template.slug
        assert 0 < template.min_vram_gb <= template.recommended_vram_gb, template.slug
        assert template.recommended_gpu and template.gpu_count >= 1, template.slug
        assert template.capabilities, template.slug


def test_seed_command(db, capsys):
    from django.core.management import call_command

    call_command("seed_model_catalog")
    call_command("seed_model_catalog")

    assert "0 created, 0 updated" in capsys.readouterr().out
