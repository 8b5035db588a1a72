package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// APIConfig configures one of the two REST APIs of the second demo.
type APIConfig struct {
	// Name is "orders" or "inventory".
	Name string
	// DB is the db's host:port (e.g. db.shop:7000).
	DB string
	// Inventory is the inventory API's base URL; orders reserves stock through it when set.
	Inventory string
}

// Item is the inventory's view of one item.
type Item struct {
	Item  string `json:"item"`
	Stock int64  `json:"stock"`
}

// Order is one order.
type Order struct {
	ID   int64  `json:"id"`
	Item string `json:"item"`
	Qty  int64  `json:"qty"`
}

// NewAPIHandler returns the HTTP handler of the API named cfg.Name.
func NewAPIHandler(cfg APIConfig, log *slog.Logger) (http.Handler, error) {
	if cfg.DB == "" {
		return nil, fmt.Errorf("api %s: --db host:port is required (e.g. db.shop:7000)", cfg.Name)
	}
	if log == nil {
		log = slog.Default()
	}
	db := DBClient{Addr: cfg.DB}
	mux := http.NewServeMux()
	RegisterCommon(mux)
	switch cfg.Name {
	case "inventory":
		inv := inventoryAPI{db: db}
		mux.HandleFunc("GET /items/{name}", inv.get)
		mux.HandleFunc("PUT /items/{name}", inv.put)
		mux.HandleFunc("POST /items/{name}/reserve", inv.reserve)
	case "orders":
		o := ordersAPI{db: db, inventory: cfg.Inventory, client: &http.Client{Timeout: 3 * time.Second}}
		mux.HandleFunc("POST /orders", o.create)
		mux.HandleFunc("GET /orders/{id}", o.get)
	default:
		return nil, fmt.Errorf("api name %q: want orders or inventory", cfg.Name)
	}
	return mux, nil
}

type inventoryAPI struct{ db DBClient }

func (a inventoryAPI) stock(ctx context.Context, name string) (int64, error) {
	v, err := a.db.Get(ctx, "stock:"+name)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

func (a inventoryAPI) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	n, err := a.stock(r.Context(), name)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, Item{Item: name, Stock: n})
}

func (a inventoryAPI) put(w http.ResponseWriter, r *http.Request) {
	var it Item
	if err := json.NewDecoder(r.Body).Decode(&it); err != nil || it.Stock < 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body: want {"stock": <non-negative integer>}`})
		return
	}
	it.Item = r.PathValue("name")
	if err := a.db.Set(r.Context(), "stock:"+it.Item, strconv.FormatInt(it.Stock, 10)); err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, it)
}

func (a inventoryAPI) reserve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Qty int64 `json:"qty"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Qty <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body: want {"qty": <positive integer>}`})
		return
	}
	name := r.PathValue("name")
	left, err := a.db.IncrBy(r.Context(), "stock:"+name, -req.Qty)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	if left < 0 {
		if _, err := a.db.IncrBy(r.Context(), "stock:"+name, req.Qty); err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusConflict, map[string]string{"error": fmt.Sprintf("not enough %s in stock", name)})
		return
	}
	writeJSON(w, http.StatusOK, Item{Item: name, Stock: left})
}

type ordersAPI struct {
	db        DBClient
	inventory string
	client    *http.Client
}

func (a ordersAPI) create(w http.ResponseWriter, r *http.Request) {
	var o Order
	if err := json.NewDecoder(r.Body).Decode(&o); err != nil || o.Item == "" || o.Qty <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body: want {"item": "<name>", "qty": <positive integer>}`})
		return
	}
	if a.inventory != "" {
		code, err := a.reserve(r.Context(), o)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		if code != http.StatusOK {
			writeJSON(w, code, map[string]string{"error": fmt.Sprintf("inventory refused %d x %s (status %d)", o.Qty, o.Item, code)})
			return
		}
	}
	id, err := a.db.IncrBy(r.Context(), "orders:seq", 1)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	o.ID = id
	body, _ := json.Marshal(o)
	if err := a.db.Set(r.Context(), "order:"+strconv.FormatInt(id, 10), string(body)); err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, o)
}

func (a ordersAPI) reserve(ctx context.Context, o Order) (int, error) {
	body, _ := json.Marshal(map[string]int64{"qty": o.Qty})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.inventory+"/items/"+o.Item+"/reserve", bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("reserve request to inventory %s: %w", a.inventory, err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reserve %s at inventory %s: %w", o.Item, a.inventory, err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (a ordersAPI) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := strconv.ParseInt(id, 10, 64); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("order id %q: want an integer", id)})
		return
	}
	v, err := a.db.Get(r.Context(), "order:"+id)
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no order " + id})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(v + "\n"))
}
