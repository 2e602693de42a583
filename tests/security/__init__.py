"""The security suite (issue 8): Faye's security history and our hardening.

Each row of research/faye.md section 4 is a named test; the ``core`` tests
drive the engine by hand, the others a real server over loopback
(``tests/trio/helpers.py``). Rows, then tests:

2013-01, remote calls through ``/meta/<method>``
    test_core_security.py::test_faye_2013_01_meta_method_names_are_403_without_side_effects
    test_faye_history.py::test_faye_2013_01_meta_method_names_are_403_over_http_and_websocket
2013-12, WebSocket DoS (faye-websocket 0.7.1: message, frame, fragment limits)
    test_faye_history.py::test_faye_2013_12_websocket_message_over_the_limit_closes_1009
    test_faye_history.py::test_faye_2013_12_websocket_declared_frame_length_is_not_trusted
    test_faye_history.py::test_faye_2013_12_websocket_fragments_count_towards_the_limit
    (also tests/trio/test_websocket.py::test_over_large_*)
2014-07, Rosetta Flash through JSON-P
    test_faye_history.py::test_faye_2014_07_rosetta_flash_callbacks_are_400
    test_faye_history.py::test_faye_2014_07_rosetta_flash_every_jsonp_header
    (also tests/trio/test_jsonp.py)
2015-07, CORS preflight reflecting requested headers
    test_faye_history.py::test_faye_2015_07_cors_preflight_reflects_no_requested_headers_or_methods
    (also tests/trio/test_cors.py::test_preflight_headers)
2015-12, #417 ``message=1`` crashed the server
    test_core_security.py::test_faye_417_non_object_bodies_are_400_before_the_engine
    test_core_security.py::test_faye_417_odd_messages_get_replies_never_exceptions
    test_core_security.py::test_faye_417_no_input_makes_the_engine_raise (hypothesis)
    test_faye_history.py::test_faye_417_non_object_messages_are_400_on_every_transport
    test_faye_history.py::test_faye_417_channel_of_the_wrong_type_is_a_402
2016-07, HTTPoxy (client side)
    test_faye_history.py::test_faye_2016_07_httpoxy_our_client_ignores_http_proxy
CVE-2020-11020, meta channels matched by prefix bypassed auth extensions
    test_core_security.py::test_cve_2020_11020_prefixed_meta_channels_are_403
    test_core_security.py::test_cve_2020_11020_an_extension_refusing_subscribe_is_not_bypassed
    test_faye_history.py::test_cve_2020_11020_prefixed_meta_channels_are_403_on_the_wire
    test_faye_history.py::test_cve_2020_11020_auth_extension_is_not_bypassed
2020-06, origins reflected with credentials (CSRF)
    test_faye_history.py::test_faye_2020_06_origin_allow_list_covers_every_transport
    (also tests/trio/test_cors.py::test_allow_list_*)
2020-07, TLS certificates not verified (client side)
    test_faye_history.py::test_faye_2020_07_our_client_verifies_certificates_by_default
    (also tests/client/test_tls.py)
2026-09 (1.4.2), ``__proto__`` client ids: message theft and DoS
    test_core_security.py::test_faye_1_4_2_hostile_client_ids_are_401
    test_core_security.py::test_faye_1_4_2_eventsource_stream_for_a_hostile_client_id_binds_nothing
    test_core_security.py::test_faye_1_4_2_websocket_connect_for_a_hostile_client_id_binds_nothing
    test_faye_history.py::test_faye_1_4_2_proto_client_ids_bind_nothing
    (also tests/trio/test_websocket.py::test_proto_client_id_binds_nothing)
Unfixed in Faye: advice injection and fake acknowledgements
    test_core_security.py::test_advice_injection_and_fake_acknowledgement_are_stripped
    test_core_security.py::test_a_publish_carrying_error_is_refused_and_not_delivered
    test_faye_history.py::test_advice_injection_and_fake_acknowledgement_reach_no_subscriber
Wildcard subscriptions (``/**``, ``/private/**``) must pass auth extensions
    test_faye_history.py::test_wildcard_subscriptions_go_through_auth_extensions
    test_core_security.py::test_wildcard_subscribers_never_receive_meta_or_service_messages
    (also tests/core/test_engine_extensions.py::test_server_auth_extension_covers_wildcards)
Unsubscribing or connecting with another client's id
    test_core_security.py::test_another_clients_session_cannot_be_touched_without_its_id
    test_core_security.py::test_client_ids_are_31_random_base36_characters
    test_faye_history.py::test_unsubscribe_connect_or_disconnect_with_another_clients_id
    test_faye_history.py::test_a_leaked_client_id_is_refused_by_an_ownership_extension
Oversized input
    test_core_security.py::test_batches_and_bodies_are_bounded
    test_core_security.py::test_channel_names_are_bounded
    test_faye_history.py::test_request_line_over_max_header_is_431
    (also tests/trio/test_robustness.py: 413, 431, 408 and connection limits)
Deeply nested input and number sizes
    test_limits.py::test_bodies_deeper_than_max_json_depth_are_400_over_http
    test_limits.py::test_bodies_deeper_than_max_json_depth_get_an_error_frame_over_websocket
    test_limits.py::test_js_safe_integers_refuse_big_integers_over_http_and_websocket
    tests/core/test_engine_limits.py::test_js_safe_integers_*
    tests/core/test_messages.py::test_depth_*, test_numbers_*
Invalid UTF-8
    test_faye_history.py::test_invalid_utf8_in_http_bodies_is_400
    test_faye_history.py::test_percent_encoded_invalid_utf8_becomes_u_fffd
    test_faye_history.py::test_invalid_utf8_in_a_websocket_text_frame_closes_1007
Malformed HTTP (including request smuggling) and malformed WebSocket frames
    test_faye_history.py::test_malformed_http_is_refused_and_the_connection_closed
    test_faye_history.py::test_both_content_length_and_chunked_is_refused_so_nothing_is_smuggled
    test_faye_history.py::test_malformed_websocket_frames_close_the_connection
    (also tests/trio/test_robustness.py::test_malformed_http_gets_400_and_close)
Clients and connections per remote address
    test_limits.py::test_clients_per_address_* and test_connections_per_address_*
    tests/core/test_engine_limits.py::test_clients_per_address_* and
    tests/core/test_engine_limits.py::test_a_session_that_ends_frees_its_address_slot
"""
