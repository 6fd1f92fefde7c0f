-- Dovecot 2.4 passdb and userdb for a chatmail relay -- written by chatmail-deploy.
-- 2.4 has no dict passdb/userdb: this asks doveauth the same questions the 2.3 dict
-- driver asked (see auth.conf), over the same socket and protocol, so that doveauth's rules
-- (account creation on first login, password and name rules, nocreate) stay in one place.
local unix = require("socket.unix")
local cjson = require("cjson")

local SOCKET = "/run/doveauth/doveauth.socket"

-- Dovecot's %E: a backslash before backslash and double quote
local function escape(s)
  return (s:gsub('[\\"]', "\\%0"))
end

-- the dict protocol's field escaping (str_tabescape) and its inverse
local TAB_ESCAPES = { ["\1"] = "\0011", ["\t"] = "\1t", ["\r"] = "\1r", ["\n"] = "\1n" }
local TAB_UNESCAPES = { ["1"] = "\1", t = "\t", r = "\r", n = "\n" }
local function tabescape(s)
  return (s:gsub("[\1\t\r\n]", TAB_ESCAPES))
end
local function tabunescape(s)
  return (s:gsub("\1(.)", function(c) return TAB_UNESCAPES[c] or c end))
end

-- One lookup: the record as a table, false when there is none, nil and a reason on failure.
local function lookup(key, user)
  local conn = (unix.stream or unix)()
  conn:settimeout(30)
  local ok, err = conn:connect(SOCKET)
  if not ok then
    conn:close()
    return nil, "doveauth: " .. tostring(err)
  end
  local request = "H3\t2\t0\t" .. tabescape(user) .. "\tauth\n"
    .. "L" .. tabescape(key) .. "\t" .. tabescape(user) .. "\n"
  ok, err = conn:send(request)
  local line
  if ok then
    line, err = conn:receive("*l")
  end
  conn:close()
  if not line then
    return nil, "doveauth: " .. tostring(err)
  end
  local kind, value = line:sub(1, 1), line:sub(2)
  if kind == "N" then
    return false
  end
  if kind ~= "O" then
    return nil, "doveauth: lookup failed"
  end
  local parsed, record = pcall(cjson.decode, tabunescape(value))
  if not parsed or type(record) ~= "table" then
    return nil, "doveauth: reply is not a JSON object"
  end
  return record
end

-- PLAIN logins: doveauth returns the account's hash (creating the account first if the
-- address is new and allowed), Dovecot checks the password against it.
function auth_password_verify(req, password)
  local key = "shared/passdb/" .. escape(password) .. '"' .. escape(req.user)
  local record, err = lookup(key, req.user)
  if record == nil then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, err
  end
  if not record or type(record.password) ~= "string" then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
  end
  local match, verr = req:password_verify(record.password, password)
  if match == 1 then
    return dovecot.auth.PASSDB_RESULT_OK, {}
  end
  if match == 0 then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "password mismatch"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, tostring(verr)
end

-- Only PLAIN is offered, so credentials are never looked up without a password.
function auth_passdb_lookup(req)
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "chatmail: only PLAIN logins"
end

function auth_userdb_lookup(req)
  local record, err = lookup("shared/userdb/" .. escape(req.user), req.user)
  if record == nil then
    return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, err
  end
  if not record then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such user"
  end
  return dovecot.auth.USERDB_RESULT_OK, { home = record.home, uid = record.uid, gid = record.gid }
end
