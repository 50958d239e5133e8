-- A group read of new entries over several keys with a total COUNT shared
-- fairly (XREADGROUP alone applies COUNT to each key).
-- KEYS: the keys, in the order their shares are given out.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3]: the most entries in total.
--
-- Each round gives every key still in play its share of what is left (the
-- remainder goes to the keys that have had the least so far, the first
-- listed first); a key that cannot fill its share leaves the next round to
-- the others.
--
-- Returns {items, waits}. items: per key that returned something,
-- {key index, entries}. waits: when nothing was read, the group's last
-- delivered id per key, for a blocking XREAD that wakes on the next entry;
-- else empty.
local group, consumer = ARGV[1], ARGV[2]
local remaining = tonumber(ARGV[3])
local n = #KEYS
local items, active, received = {}, {}, {}
for i = 1, n do
  active[i] = i
  received[i] = 0
end

-- Orders key indexes by entries received so far, then as listed (a stable
-- insertion sort: the lists are short).
local function by_need(list)
  for j = 2, #list do
    local v = list[j]
    local k = j - 1
    while k >= 1 and (received[list[k]] > received[v] or
        (received[list[k]] == received[v] and list[k] > v)) do
      list[k + 1] = list[k]
      k = k - 1
    end
    list[k + 1] = v
  end
end

local function nogroup(key)
  return redis.error_reply("NOGROUP No such key '" .. key .. "' or consumer group '" .. group ..
    "' in XREADGROUP with GROUP option")
end

-- Every key's group is checked before anything is read: scripts do not
-- roll back, so a NOGROUP met after another key delivered entries would
-- leave them pending with nobody told. One XREADGROUP of the consumer's
-- own history after the highest id but one checks them all (the server
-- looks up every key's group before it reads any) and delivers nothing.
-- Not the highest id itself: the server takes that one for '>'.
local check = {'XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS'}
for i = 1, n do
  check[#check + 1] = KEYS[i]
end
for _ = 1, n do
  check[#check + 1] = '18446744073709551615-18446744073709551614'
end
local checked = redis.pcall(unpack(check))
if type(checked) == 'table' and checked.err then
  return redis.error_reply(checked.err)
end

-- The group's last delivered id per key, for a blocking wait: asked only
-- when nothing was read.
local function last_delivered()
  local ids = {}
  for i = 1, n do
    local groups = redis.pcall('XINFO', 'GROUPS', KEYS[i])
    if type(groups) == 'table' and groups.err and not missing(groups) then
      return redis.error_reply(groups.err)
    end
    if type(groups) ~= 'table' or groups.err then
      return nogroup(KEYS[i])
    end
    for _, g in ipairs(groups) do
      if field_of(g, 'name') == group then
        ids[i] = field_of(g, 'last-delivered-id')
      end
    end
    if not ids[i] then
      return nogroup(KEYS[i])
    end
  end
  return ids
end

local function read(i, want)
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
    'STREAMS', KEYS[i], '>')
  if not reply then
    return 0
  end
  local list = reply[1][2]
  if #list == 0 then
    return 0
  end
  local item = items[i]
  if not item then
    item = {i, {}}
    items[i] = item
  end
  for _, e in ipairs(list) do
    item[2][#item[2] + 1] = e
  end
  return #list
end

while remaining > 0 and #active > 0 do
  by_need(active)
  local k = #active
  local base, extra = math.floor(remaining / k), remaining % k
  local still = {}
  for turn, i in ipairs(active) do
    local want = base
    if turn <= extra then
      want = want + 1
    end
    if want == 0 then
      still[#still + 1] = i
    else
      local got = read(i, want)
      remaining = remaining - got
      received[i] = received[i] + got
      if got == want then
        still[#still + 1] = i
      end
    end
  end
  active = still
end

local out = {}
for i = 1, n do
  if items[i] then
    out[#out + 1] = items[i]
  end
end

if #out > 0 then
  return {out, {}}
end
local ids = last_delivered()
if ids.err then
  return ids
end
return {out, ids}
