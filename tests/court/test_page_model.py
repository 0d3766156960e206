"""The Processos view-model without a server: typing, lookup, status, redelivery."""

from __future__ import annotations

from engine.brazil import format_cnj, make_cnj
from engine.security import SYSTEM

NUMERO = make_cnj(321, 2022, 8, 26, 100)


def test_typing_masks_and_checks_digits():
    from dashboard.pages.processos import check_cnj, mask_cnj

    assert mask_cnj("00003213") == "0000321-3"
    assert mask_cnj(NUMERO) == format_cnj(NUMERO)
    assert check_cnj("0000321")[1] == "Faltam 13 dígitos"
    wrong = NUMERO[:7] + ("00" if NUMERO[7:9] != "00" else "01") + NUMERO[9:]
    assert check_cnj(wrong)[0] is None and "verificadores" in check_cnj(wrong)[1]
    assert check_cnj(format_cnj(NUMERO)) == (NUMERO, "Número válido")


def test_lookup_loads_status_and_webhook_log(court_settings, simulator, receiver, run_inline):
    from dashboard.pages.processos import ProcessosViewModel

    vm = ProcessosViewModel(settings=court_settings, user=SYSTEM)
    vm.act(vm.lookup)
    assert vm.error == "Digite o número do processo."
    vm.numero_input = NUMERO[:10]
    assert not vm.numero_valid and vm.numero == ""
    vm.numero_input = format_cnj(NUMERO)
    vm.webhook_url = receiver.url
    vm.act(vm.lookup)
    assert vm.error == "" and "Download iniciado" in vm.notice
    assert vm.status["counters"]["available"] == len(simulator.documents(NUMERO))
    assert not vm.running
    delivery = vm.status["webhook"]["deliveries"][0]
    assert delivery["status"] == "succeeded"
    vm.act(vm.redeliver, delivery["id"])
    assert vm.error == "" and len(receiver.requests) == 2
    vm.act(vm.lookup)
    assert "Resultado guardado" in vm.notice


def test_errors_become_messages(court_settings, simulator, run_inline):
    from dashboard.pages.processos import ProcessosViewModel

    vm = ProcessosViewModel(settings=court_settings, user=SYSTEM)
    vm.numero_input = format_cnj(make_cnj(404, 2022, 8, 26, 100))
    vm.act(vm.lookup)
    assert "não encontrou" in vm.error and vm.status is None and not vm.busy
    vm.numero_input = format_cnj(NUMERO)
    vm.webhook_url = "http://10.1.2.3/x"
    vm.act(vm.lookup)
    assert "rede privada" in vm.error


def test_webhooks_admin_shows_the_secret_once_and_logs_deliveries(court_settings, receiver, recording_queue):
    from dashboard.pages.webhooks import WebhooksViewModel

    vm = WebhooksViewModel(settings=court_settings, user=SYSTEM)
    vm.act(vm.load)
    assert vm.endpoints == [] and vm.error == ""
    vm.new_url = "http://192.168.0.10/hook"
    vm.act(vm.create)
    assert "rede privada" in vm.error and vm.revealed_secret == ""
    vm.new_url, vm.new_description = receiver.url, "ERP"
    vm.act(vm.create)
    assert vm.revealed_secret.startswith("whsec_") and vm.new_url == ""
    assert vm.revealed_secret not in str(vm.endpoints)
    vm.test_url = receiver.url
    vm.act(vm.send_test)
    assert vm.last_test["status"] == "succeeded" and vm.deliveries[0]["event_type"] == "webhook.teste"
    vm.act(vm.redeliver, vm.deliveries[0]["id"])
    assert vm.error == ""
    vm.act(vm.deactivate, vm.endpoints[0]["id"])
    assert vm.endpoints == []
