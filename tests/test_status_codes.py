from mailpipe_gateway.smtp.status import with_enhanced_code


def test_codes_are_added_where_missing() -> None:
    assert with_enhanced_code("501 Syntax: MAIL FROM: <address>") == "501 5.5.4 Syntax: MAIL FROM: <address>"
    assert with_enhanced_code("552 Error: Too much mail data") == "552 5.3.4 Error: Too much mail data"
    assert with_enhanced_code("250 OK") == "250 2.0.0 OK"
    assert with_enhanced_code("221 Bye") == "221 2.0.0 Bye"
    assert with_enhanced_code("250-HELP") == "250-2.0.0 HELP"


def test_existing_codes_and_intermediate_replies_are_left_alone() -> None:
    assert with_enhanced_code("550 5.1.1 <x@y>: unknown") == "550 5.1.1 <x@y>: unknown"
    assert with_enhanced_code("354 End data with <CR><LF>.<CR><LF>") == "354 End data with <CR><LF>.<CR><LF>"
    assert with_enhanced_code("220 mail.example.test ESMTP") == "220 mail.example.test ESMTP"
    assert with_enhanced_code("334 VXNlcm5hbWU6") == "334 VXNlcm5hbWU6"
