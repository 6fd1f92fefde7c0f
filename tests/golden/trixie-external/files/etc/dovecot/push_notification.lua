-- Run by Dovecot's LMTP for each delivered message: mark the mailbox so that
-- chatmail-metadata sends a push notification to the recipient's devices.

function dovecot_lua_notify_begin_txn(user)
  return user
end

function dovecot_lua_notify_event_message_new(user, event)
  local mbox = user:mailbox(event.mailbox)
  mbox:sync()
  -- a message the user sent to itself needs no push
  if user.username ~= event.from_address then
    mbox:metadata_set("/private/messagenew", "")
  end
  mbox:free()
end

function dovecot_lua_notify_end_txn(ctx)
end
