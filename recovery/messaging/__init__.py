"""SMS: phone numbers (E.164), GSM-7 segments, every text a customer reads, the senders
(Twilio, sandbox) and the outbox that sends after the commit."""
